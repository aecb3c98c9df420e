"""Sample running Baton processes with py-spy and summarise where their CPU time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); from
them we rank functions by *self* samples (the frame on top of the stack) and by
*inclusive* samples (anywhere on the stack). Idle threads are not sampled (py-spy's
default), so the counts are CPU time, and samples / (rate x seconds) is the share of one
core the process used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.common import BIN

log = logging.getLogger("bench.profile")

RATE = 100  # samples per second
_LINE_NO = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    found = BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    name: str
    pid: int
    raw_path: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


class Profiler:
    """py-spy ``record`` on several processes at once; :meth:`stop` writes summaries."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.recordings: list[Recording] = []

    def start(self, name: str, pid: int) -> None:
        exe = py_spy()
        if exe is None:
            log.warning("py-spy is not installed: no profile of %s", name)
            return
        raw = self.out_dir / f"profile-{name}.txt"
        argv = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(RATE),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(raw),
        ]
        with (self.out_dir / f"py-spy-{name}.log").open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - argv built here
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.recordings.append(Recording(name=name, pid=pid, raw_path=raw, process=process))

    def stop(self) -> dict[str, str]:
        """SIGINT every recorder (py-spy then writes its file); name -> summary text."""
        for rec in self.recordings:
            rec.seconds = time.monotonic() - rec.started
            with contextlib.suppress(ProcessLookupError):
                rec.process.send_signal(signal.SIGINT)
        summaries: dict[str, str] = {}
        for rec in self.recordings:
            try:
                rec.process.wait(30)
            except subprocess.TimeoutExpired:
                rec.process.kill()
                rec.process.wait(5)
                log.warning("py-spy on %s did not stop; killed", rec.name)
                continue
            if not rec.raw_path.exists():
                log.warning("py-spy wrote no profile for %s", rec.name)
                continue
            text = summarise(rec.raw_path.read_text(errors="replace"), rec.name, rec.seconds)
            (self.out_dir / f"profile-{rec.name}-summary.txt").write_text(text)
            summaries[rec.name] = text
        self.recordings.clear()
        return summaries


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: aggregate across lines."""
    frame = _LINE_NO.sub(")", frame)
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def summarise(raw: str, name: str, seconds: float, top: int = 25) -> str:
    """Top functions by self and by inclusive samples of a py-spy raw profile."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    app_counts: Counter[str] = Counter()  # Baton's own code (backend/, worker/)
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if "(" in f]  # skip thread/process labels
        if not raw_frames:
            continue
        frames = [_short(f) for f in raw_frames]
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
        app = {_LINE_NO.sub(")", f) for f in raw_frames if "(backend/" in f or "(worker/" in f}
        for frame in app:
            app_counts[frame] += count
    if total == 0:
        return f"{name}: no samples\n"
    busy = total / (RATE * seconds) if seconds > 0 else 0.0
    lines = [
        f"{name}: {total} samples over {seconds:.1f} s at {RATE}/s (~{busy:.0%} of one core busy)",
        "",
        f"top {top} by self time:",
    ]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in self_counts.most_common(top)]
    lines += ["", f"top {top} by inclusive time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in incl_counts.most_common(top)]
    lines += ["", f"top {top} of Baton's own functions (backend/, worker/) by inclusive time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in app_counts.most_common(top)]
    return "\n".join(lines) + "\n"


class PgSampler:
    """Poor man's PostgreSQL profiler: sample ``pg_stat_activity`` of one database.

    pg_stat_statements needs a server restart to load; this needs nothing. Each sample
    counts the statements active (or waiting on a lock) at that instant; over thousands of
    samples that is where the server spends its time, by statement.
    """

    def __init__(self, dsn: str, database: str, interval: float = 0.02) -> None:
        self.dsn = dsn
        self.database = database
        self.interval = interval
        self.samples = 0
        self.counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                rows = await conn.fetch(_ACTIVE, self.database)
                self.samples += 1
                for row in rows:
                    waiting = f" [waits: {row['wait']}]" if row["wait"] else ""
                    self.counts[f"{row['query']}{waiting}"] += 1
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()

    async def stop(self, top: int = 20) -> str:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.samples:
            return "postgres: no samples\n"
        busy = sum(self.counts.values()) / self.samples
        lines = [
            f"postgres ({self.database}): {self.samples} samples of pg_stat_activity, "
            f"on average {busy:.2f} statements active; top {top} "
            "(share of samples in which the statement was active):"
        ]
        lines += [f"  {c / self.samples:6.1%}  {q}" for q, c in self.counts.most_common(top)]
        return "\n".join(lines) + "\n"


_ACTIVE = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query,
       CASE WHEN wait_event_type IN ('Lock', 'LWLock', 'IO') THEN
            wait_event_type || ':' || wait_event END AS wait
  FROM pg_stat_activity
 WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()
"""

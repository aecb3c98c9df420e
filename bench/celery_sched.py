"""The Celery side of schedules10k: one ``celery beat`` with as many every-minute entries as
Baton has schedules, sending to the Redis broker; no worker (see ``bench.celery_beat``).

Lateness = the epoch second ``apply_async`` returned in beat minus the instant the entry was
due. Beat starts with every entry due at the next minute; the first measured instant is the
first minute at least 3 s after beat has set up its schedule, and the run ends when every
entry has been sent for the last measured instant, or ``BATON_BENCH_BEAT_WAIT`` (90 s)
after it. Celery's crontab entries have no end, so instants after the window keep coming:
sends are counted by the instant they were due for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bench import celery_app
from bench.baton_sched import EVERY_MINUTE, lateness_summary, schedules_minutes
from bench.common import BIN, BenchError, JsonDict, reached, rounded, wait_until
from bench.cpu import CpuMeter
from bench.profiling import Profiler
from bench.services import redis_pid

if TYPE_CHECKING:
    from bench.celery_bench import CeleryBench

log = logging.getLogger("bench.celery.sched")

READY_MARGIN = 3.0  # seconds between beat being set up and the first measured instant


class BeatRecord:
    """Reads ``bench.celery_beat``'s record file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""
        self.ready: float | None = None
        self.entries = 0
        self.sends: list[tuple[str, int, float]] = []  # (entry, due instant, sent at)

    def poll(self) -> None:
        try:
            with self.path.open() as handle:
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset = handle.tell()
        except OSError:
            return
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            parts = line.split()
            if len(parts) != 3:
                continue
            if parts[0] == "ready":
                self.ready, self.entries = float(parts[1]), int(parts[2])
            else:
                self.sends.append((parts[0], round(float(parts[1])), float(parts[2])))


async def schedules10k(bench: CeleryBench) -> JsonDict:
    cfg = bench.cfg
    total = cfg.schedule_tenants * cfg.schedules_per_tenant
    minutes = schedules_minutes(cfg.scale)
    async with bench.cluster("celery-schedules10k", workers=False) as cluster:
        out = cluster.procs.log_dir
        record = BeatRecord(out / "beat-record.txt")
        began = time.time()
        beat = cluster.procs.start(
            "celery-beat",
            [
                str(BIN / "celery"),
                "-A",
                "bench.celery_beat",
                "beat",
                "-S",
                "bench.celery_beat:TimedScheduler",
                "-s",
                str(out / "celerybeat-schedule"),
                "-l",
                "WARNING",
            ],
            env={
                "BATON_BENCH_BEAT_ENTRIES": str(total),
                "BATON_BENCH_BEAT_RECORD": str(record.path),
            },
        )

        async def ready() -> bool:
            cluster.procs.check_alive()
            record.poll()
            return record.ready is not None

        await wait_until(ready, within=180, interval=0.2, what="celery beat to set up")
        assert record.ready is not None
        if record.entries < total:
            raise BenchError(f"celery beat has {record.entries} entries, not {total}")
        startup = record.ready - began
        first = math.ceil((record.ready + READY_MARGIN) / 60) * 60
        instants = [int(first + 60 * i) for i in range(minutes + 1)]
        await asyncio.sleep(max(0.0, first - 2 - time.time()))
        redis = await redis_pid(bench.url)
        meter = CpuMeter({"beat": lambda: [beat.pid], "redis": lambda: [redis] if redis else []})
        meter.start()
        profiler = Profiler(out) if cfg.profile else None
        if profiler is not None:
            profiler.start("beat", beat.pid)
        deadline = instants[-1] + cfg.beat_wait_seconds

        async def last_instant_sent() -> bool:
            cluster.procs.check_alive()
            record.poll()
            return sum(1 for _, due, _ in record.sends if due == instants[-1]) >= total

        timed_out = not await reached(
            last_instant_sent,
            within=deadline - time.time(),
            interval=0.5,
            what="celery beat to send the last instant",
        )
        ended = time.time()
        cpu = meter.stop()
        if profiler is not None:
            for name, summary in profiler.stop().items():
                log.info("py-spy profile of celery %s (schedules10k):\n%s", name, summary)
        # Stop beat (SIGTERM: it closes the scheduler, which flushes the record); then
        # every send recorded must be a message in the broker.
        await asyncio.to_thread(cluster.procs.stop, beat)
        record.poll()
        queued = int(await cluster.redis.llen(celery_app.QUEUE))
    window = set(instants)
    in_window = [(name, due, sent) for name, due, sent in record.sends if due in window]
    per_key = Counter((name, due) for name, due, _ in in_window)
    expected = total * len(instants)
    sent_in_cpu_window = sum(1 for _, _, sent in record.sends if first - 2 <= sent <= ended)
    per_instant = []
    for at in instants:
        values = [sent - due for _, due, sent in in_window if due == at]
        per_instant.append(
            {
                "instant": time.strftime("%H:%M:%S", time.gmtime(at)),
                "fires": len(values),
                "last_fire_s": rounded(max(values), 2) if values else None,
            }
        )
    return {
        "schedules": total,
        "cron": "crontab() (every minute; Baton: " + EVERY_MINUTE + ")",
        "minutes": minutes,
        "fires_expected": expected,
        "fires": len(in_window),
        "fires_missing": expected - len(per_key),
        "fires_duplicated": sum(n - 1 for n in per_key.values() if n > 1),
        "all_fired": len(per_key) == expected,
        "caught_up": not timed_out,
        "run_ended_after_last_instant_s": rounded(ended - instants[-1], 1),
        **lateness_summary([sent - due for _, due, sent in in_window]),
        "per_instant": per_instant,
        "sends_total": len(record.sends),
        "messages_in_broker": queued,
        "scheduler_cpu_s": cpu["beat"],
        "scheduler_cpu_ms_per_fire": rounded(cpu["beat"] * 1000 / max(sent_in_cpu_window, 1), 2),
        "system_cpu_ms_per_fire": rounded(
            (cpu["beat"] + cpu["redis"]) * 1000 / max(sent_in_cpu_window, 1), 2
        ),
        "startup_seconds": rounded(startup, 2),
        "measured": "apply_async() returned in beat - the instant the entry was due (beat's "
        "own crontab arithmetic); CPU per send over the measured window",
        "cpu_seconds": cpu,
        "setup": "1 celery beat (default PersistentScheduler, shelve file), crontab() "
        "entries sending to the Redis broker (DB 15); no workers",
    }

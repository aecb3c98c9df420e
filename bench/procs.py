"""Child processes of a benchmark: real subprocesses, logs in files, always cleaned up.

Each child runs in a session (and so a process group) of its own, so stopping it also stops
whatever it forked (Celery's prefork pool). On Linux a child also gets ``PR_SET_PDEATHSIG``
so it dies with the benchmark even if the benchmark itself is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError

log = logging.getLogger("bench.procs")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    expect_exit: bool = False  # a one-shot command (db upgrade), not a server

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"<no log at {self.log_path}>"
        return "\n".join(text.splitlines()[-lines:])


class ProcessSet:
    """Starts, watches and stops the children of one benchmark phase."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - argv built by the benchmark itself
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=str(Path(__file__).resolve().parents[1]),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name=name, argv=argv, process=process, log_path=log_path)
        self.children.append(child)
        log.debug("started %s (pid %d): %s", name, process.pid, " ".join(argv))
        return child

    def run(self, name: str, argv: list[str], *, timeout: float) -> None:
        """Run a one-shot command to completion; :class:`BenchError` with its log if it fails."""
        child = self.start(name, argv)
        child.expect_exit = True
        try:
            code = child.process.wait(timeout)
        except subprocess.TimeoutExpired as error:
            self._kill(child, grace=2.0)
            raise BenchError(f"{name} did not finish in {timeout:.0f} s\n{child.tail()}") from error
        if code != 0:
            raise BenchError(f"{name} exited with {code}\n{child.tail()}")

    def check_alive(self) -> None:
        """:class:`BenchError` (with the log tail) if a server child has exited."""
        for child in self.children:
            if child.expect_exit:
                continue
            code = child.process.poll()
            if code is not None:
                raise BenchError(
                    f"{child.name} (pid {child.pid}) exited with {code}; log tail:\n{child.tail()}"
                )

    def by_name(self, prefix: str) -> list[Child]:
        return [c for c in self.children if c.name.startswith(prefix)]

    def stop(self, child: Child, *, grace: float = 15.0) -> None:
        """SIGTERM the child's process group; SIGKILL it after ``grace`` seconds."""
        self._kill(child, grace=grace)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self, *, grace: float = 15.0) -> None:
        """Stop every child: SIGTERM all groups first, then wait, then SIGKILL stragglers."""
        for child in self.children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(remaining)
        for child in self.children:
            _signal_group(child, signal.SIGKILL)  # the group may hold forked grandchildren
            if child.process.poll() is None:
                log.warning("%s (pid %d) ignored SIGTERM; killed", child.name, child.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)
        self.children.clear()

    def dump_tails(self, lines: int = 30) -> None:
        """Log every child's log tail (on failure)."""
        for child in self.children:
            log.error(
                "---- %s (pid %d, exit %s) %s ----\n%s",
                child.name,
                child.pid,
                child.process.poll(),
                child.log_path,
                child.tail(lines),
            )

    def _kill(self, child: Child, *, grace: float) -> None:
        _signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killed", child.name, child.pid, grace
            )
        _signal_group(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)


def _signal_group(child: Child, sig: int) -> None:
    # The child leads its own session, so its pgid is its pid. Signal the group even after
    # the leader exited: forked grandchildren (a prefork pool) may outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)

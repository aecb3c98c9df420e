"""CPU seconds per component over a measured window (on a 2-core box, the scarce resource).

Components are process groups: the system's own processes (API, scheduler, workers), the
benchmark client (this process), the PostgreSQL backends serving the benchmark database
and the Redis server. ``machine`` is every core's busy time over the window, so
``other`` = what processes outside the benchmark used meanwhile (noise: a busy machine).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable

import psutil

Pids = Callable[[], Iterable[int]]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Celery's prefork pool, a worker's subprocesses)."""
    try:
        parent = psutil.Process(pid)
        return [pid, *(c.pid for c in parent.children(recursive=True))]
    except psutil.Error:
        return []


def postgres_backends(database: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected to ``database`` (from their titles)."""
    found: list[int] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            title = " ".join(proc.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in f"{title} ":
                found.append(proc.pid)
    return found


def _cpu(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """``start()`` then ``stop()``: CPU seconds per group over the window."""

    def __init__(self, groups: dict[str, Pids]) -> None:
        self.groups = {**groups, "client": lambda: [os.getpid()]}
        self._before: dict[str, dict[int, float]] = {}
        self._began = 0.0
        self._machine = 0.0

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for name, pids in self.groups.items():
            values = {pid: cpu for pid in pids() if (cpu := _cpu(pid)) is not None}
            snap[name] = values
        return snap

    def start(self) -> None:
        self._before = self._snapshot()
        self._began = time.monotonic()
        self._machine = _machine_busy()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        window = time.monotonic() - self._began
        result: dict[str, float] = {"window_s": round(window, 2)}
        total = 0.0
        for name, values in after.items():
            before = self._before.get(name, {})
            used = sum(cpu - before.get(pid, 0.0) for pid, cpu in values.items())
            result[name] = round(used, 2)
            total += used
        machine = _machine_busy() - self._machine
        result["machine"] = round(machine, 2)
        result["other"] = round(max(machine - total, 0.0), 2)
        result["cores"] = psutil.cpu_count() or 0
        return result

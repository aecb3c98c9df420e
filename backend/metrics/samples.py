"""Engine metrics, gathered while a transaction applies events and recorded after it commits.

A batch that fails is rolled back and retried event by event; recording only after the
commit means no attempt or run is counted twice. Nothing here queries anything: the values
come from the rows the engine has already loaded.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kernel.metrics import (
    ATTEMPT_REASONS,
    ATTEMPT_STATUSES,
    ENGINE_EVENT_LAG,
    EVENT_KINDS,
    RUN_STATUSES,
    RUNS_FINISHED,
    SCHEDULE_TICKS,
    SCHEDULER_FIRING_LATENESS,
    TASK_ATTEMPTS_FINISHED,
    TASK_DURATION,
    TASK_START_LATENCY,
    TENANTS,
    bounded,
)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds (never negative: clocks differ), None if either is unknown."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def observe_event_lag(kind: str, emitted_at: float, now: float | None = None) -> None:
    """Record how long a worker event waited before the engine applied it."""
    lag = (time.time() if now is None else now) - emitted_at
    ENGINE_EVENT_LAG.labels(bounded(kind, EVENT_KINDS)).observe(max(lag, 0.0))


@dataclass
class EngineSamples:
    """Observations of one engine transaction, recorded by :meth:`record` after its commit."""

    attempts: list[tuple[str, str, float | None]] = field(default_factory=list)
    start_latencies: list[float] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def attempt_finished(
        self, status: str, reason: str | None, started: datetime | None, ended: datetime
    ) -> None:
        """An attempt ended with ``status`` (and ``reason`` unless it succeeded)."""
        label_status = bounded(status, ATTEMPT_STATUSES)
        label_reason = "none" if status == "succeeded" else bounded(reason, ATTEMPT_REASONS)
        self.attempts.append((label_status, label_reason, seconds_between(started, ended)))

    def task_started(self, ready_since: datetime | None, started: datetime) -> None:
        """An attempt started; ``ready_since`` is when its task became ready to run."""
        latency = seconds_between(ready_since, started)
        if latency is not None:
            self.start_latencies.append(latency)

    def run_finished(self, status: str) -> None:
        """A run reached a final status."""
        self.runs.append(bounded(status, RUN_STATUSES))

    def record(self, tenant_id: uuid.UUID | str) -> None:
        """Add the observations to the metrics (once: they are cleared)."""
        tenant = TENANTS.label(tenant_id)
        # One child per label set, not per observation (``labels`` was a few per cent of
        # the engine's CPU at a few thousand tasks a second).
        finished = Counter((status, reason) for status, reason, _ in self.attempts)
        for (status, reason), count in finished.items():
            TASK_ATTEMPTS_FINISHED.labels(tenant, status, reason).inc(count)
        durations: dict[str, Any] = {}
        for status, _, duration in self.attempts:
            if duration is not None:
                if status not in durations:
                    durations[status] = TASK_DURATION.labels(tenant, status)
                durations[status].observe(duration)
        if self.start_latencies:
            histogram = TASK_START_LATENCY.labels(tenant)
            for latency in self.start_latencies:
                histogram.observe(latency)
        for status, count in Counter(self.runs).items():
            RUNS_FINISHED.labels(tenant, status).inc(count)
        self.attempts.clear()
        self.start_latencies.clear()
        self.runs.clear()


def record_schedule_ticks(*, fired: int, skipped: int, missed: int, lateness: list[float]) -> None:
    """Count a scheduler pass's ticks by outcome and observe how late each fire was."""
    for outcome, count in (("fired", fired), ("skipped", skipped), ("missed", missed)):
        if count:
            SCHEDULE_TICKS.labels(outcome).inc(count)
    for seconds in lateness:
        SCHEDULER_FIRING_LATENESS.observe(max(seconds, 0.0))

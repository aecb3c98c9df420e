"""Every Prometheus metric Baton defines, in one place, with its help text and labels.

All of them live in :data:`REGISTRY` (Baton's own, not prometheus_client's global one), which
the API's ``/metrics`` and the engine's and workers' metrics ports expose. HTTP metrics are
the instrumentator's defaults (``http_requests_total``, ``http_request_duration_seconds`` ...)
and live in each API app's registry (``backend.metrics.http``).

Every label has a bounded set of values:

- ``status``, ``reason``, ``kind``, ``outcome``: the fixed tuples below; anything else is
  counted as ``other`` (:func:`bounded`).
- ``tenant``: the ids or slugs listed in ``BATON_METRICS_TENANT_LABELS``, else ``other``
  (:class:`TenantLabels`) - its cardinality is set by configuration, never by traffic.
- ``queue``: queue names, at most ``BATON_METRICS_MAX_QUEUES`` of them, then ``other``.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Iterable, Sized
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

# ``*_created`` series double the series count and no dashboard of ours reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

OTHER = "other"

# ---------------------------------------------------------------------- label value sets
RUN_STATUSES = ("succeeded", "failed", "cancelled")
ATTEMPT_STATUSES = ("succeeded", "failed", "cancelled", "released", "lost")
ATTEMPT_REASONS = (
    "none",  # succeeded
    "error",
    "timeout",
    "cancelled",
    "lost",
    "unsupported",
    "released",
    "run_timeout",
    "fail_fast",
)
EVENT_KINDS = ("started", "heartbeat", "log", "finished", "released")
TICK_OUTCOMES = ("fired", "skipped", "missed")


def bounded(value: str | None, allowed: Iterable[str], *, empty: str = "none") -> str:
    """``value`` if it is one of ``allowed``, ``empty`` if it is missing, else "other"."""
    if not value:
        return empty
    return value if value in allowed else OTHER


class TenantLabels:
    """Which tenants get a ``tenant`` label value of their own (the rest: "other").

    Configured from ``BATON_METRICS_TENANT_LABELS``: an entry that is a UUID is a tenant id;
    any other entry is a slug, resolved to an id by the engine's gatherer (the only process
    that labels by tenant). The label value is the entry as configured.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}
        self._slugs: set[str] = set()

    def configure(self, entries: Iterable[str]) -> None:
        """Replace the configured tenants."""
        by_id: dict[str, str] = {}
        slugs: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                by_id[str(uuid.UUID(entry))] = entry
            except ValueError:
                slugs.add(entry)
        self._by_id, self._slugs = by_id, slugs

    def unresolved(self) -> list[str]:
        """Configured slugs whose tenant id is not known yet."""
        known = set(self._by_id.values())
        return sorted(slug for slug in self._slugs if slug not in known)

    def resolve(self, slug: str, tenant_id: uuid.UUID | str) -> None:
        """Record the id of a configured slug."""
        if slug in self._slugs:
            self._by_id[str(tenant_id)] = slug

    def label(self, tenant_id: uuid.UUID | str) -> str:
        """The ``tenant`` label value of a tenant."""
        return self._by_id.get(str(tenant_id), OTHER)

    def values(self) -> list[str]:
        """Every value the ``tenant`` label can take."""
        return sorted({*self._by_id.values(), *self._slugs, OTHER})


TENANTS = TenantLabels()

# ---------------------------------------------------------------------------- buckets
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# ------------------------------------------------------------------ engine (domain) metrics
RUNS_FINISHED = Counter(
    "baton_runs_finished_total",
    "Runs that reached a final status.",
    ["tenant", "status"],
    registry=REGISTRY,
)
SLA_MISSES = Counter(
    "baton_sla_misses_total",
    "Runs that missed their job's SLA, by kind (max_duration, finish_by); once per run.",
    ["tenant", "kind"],
    registry=REGISTRY,
)
TASK_ATTEMPTS_FINISHED = Counter(
    "baton_task_attempts_finished_total",
    "Task attempts that ended, by final status and failure reason (none when succeeded).",
    ["tenant", "status", "reason"],
    registry=REGISTRY,
)
TASK_START_LATENCY = Histogram(
    "baton_task_start_latency_seconds",
    "From the moment a task run became ready (its run created, a retry due) to its "
    "attempt starting on a worker.",
    ["tenant"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TASK_DURATION = Histogram(
    "baton_task_duration_seconds",
    "How long task attempts ran on a worker, by final status.",
    ["tenant", "status"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
TASKS_DISPATCHED = Counter(
    "baton_tasks_dispatched_total",
    "Task attempts admitted and dispatched to a queue stream.",
    ["tenant"],
    registry=REGISTRY,
)
ENGINE_EVENT_LAG = Histogram(
    "baton_engine_event_lag_seconds",
    "Time from a worker emitting an event to the engine applying it (engine clock minus "
    "worker clock).",
    ["kind"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ENGINE_EVENTS_DEAD_LETTERED = Counter(
    "baton_engine_events_dead_lettered_total",
    "Worker events the engine gave up on after repeated failures (logged, acknowledged).",
    registry=REGISTRY,
)
RECONCILER_REDISPATCHED = Counter(
    "baton_reconciler_redispatched_total",
    "In-flight tasks dispatched again because Redis lost its data.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "baton_queue_depth",
    "Dispatched task messages no worker has read yet, summed over tenants.",
    ["queue"],
    registry=REGISTRY,
)
QUEUE_PENDING = Gauge(
    "baton_queue_pending",
    "Task messages read by a worker but not acknowledged (running or abandoned), summed "
    "over tenants.",
    ["queue"],
    registry=REGISTRY,
)
TENANT_QUEUE_DEPTH = Gauge(
    "baton_tenant_queue_depth",
    "Dispatched task messages no worker has read yet, summed over queues.",
    ["tenant"],
    registry=REGISTRY,
)

# ---------------------------------------------------------------------- dependencies
DEPENDENCIES = ("postgres", "redis")
DEPENDENCY_UP = Gauge(
    "baton_dependency_up",
    "1 while this process reaches the dependency, 0 while it is riding out an outage.",
    ["dependency"],
    registry=REGISTRY,
)
DEPENDENCY_OUTAGES = Counter(
    "baton_dependency_outages_total",
    "Outages of a dependency this process noticed (each one retried with backoff until "
    "the dependency answered again).",
    ["dependency"],
    registry=REGISTRY,
)
for _dependency in DEPENDENCIES:  # present (up, no outage) before the first one
    DEPENDENCY_UP.labels(_dependency).set(1)
    DEPENDENCY_OUTAGES.labels(_dependency)

# ------------------------------------------------------------------------------ scheduler
SCHEDULER_FIRING_LATENESS = Histogram(
    "baton_scheduler_firing_lateness_seconds",
    "How long after its scheduled instant the scheduler fired a run (jitter excluded).",
    buckets=LATENESS_BUCKETS,
    registry=REGISTRY,
)
SCHEDULE_TICKS = Counter(
    "baton_schedule_ticks_total",
    "Schedule instants handled, by outcome (fired, skipped, missed).",
    ["outcome"],
    registry=REGISTRY,
)

# -------------------------------------------------------------------------------- workers
WORKER_HEARTBEATS = Counter(
    "baton_worker_heartbeats_total",
    "Heartbeats workers in this process have sent.",
    registry=REGISTRY,
)
WORKER_ABANDONED_CLAIMED = Counter(
    "baton_worker_abandoned_claimed_total",
    "Task messages a dead worker left pending, claimed and reported lost.",
    registry=REGISTRY,
)
WORKER_SLOTS_BUSY = Gauge(
    "baton_worker_slots_busy",
    "Worker slots running a task, over the workers in this process.",
    registry=REGISTRY,
)
WORKER_SLOTS_IDLE = Gauge(
    "baton_worker_slots_idle",
    "Worker slots free for a task, over the workers in this process.",
    registry=REGISTRY,
)


class _Capacity(Protocol):
    @property
    def concurrency(self) -> int: ...


class SlotOwner(Protocol):
    """What the slot gauges read from a worker (``worker.runner.Worker``)."""

    @property
    def config(self) -> _Capacity: ...

    @property
    def running(self) -> Sized: ...


_workers: weakref.WeakSet[SlotOwner] = weakref.WeakSet()
_workers_lock = threading.Lock()  # scrapes run in the metrics server's thread


def track_worker(worker: SlotOwner) -> None:
    """Count a running worker's slots in the busy/idle gauges (read at scrape time)."""
    with _workers_lock:
        _workers.add(worker)


def untrack_worker(worker: SlotOwner) -> None:
    """Stop counting a worker that has stopped."""
    with _workers_lock:
        _workers.discard(worker)


def _slots() -> tuple[int, int]:
    with _workers_lock:
        workers = list(_workers)
    busy = sum(len(w.running) for w in workers)
    return busy, sum(w.config.concurrency for w in workers)


def _idle_slots() -> float:
    busy, capacity = _slots()
    return float(max(capacity - busy, 0))


WORKER_SLOTS_BUSY.set_function(lambda: float(_slots()[0]))
WORKER_SLOTS_IDLE.set_function(_idle_slots)


def initialise_label_values(tenants: Iterable[str] | None = None) -> None:
    """Create every known label combination at zero, so ``/metrics`` shows it before its
    first event (a labelled series is otherwise absent until used, and an alert on
    ``increase(...)`` or a dashboard panel sees nothing instead of 0). ``tenants``: the
    ``tenant`` label values (default: :meth:`TenantLabels.values`); queues are unknown
    until seen and stay absent."""
    tenant_values = list(tenants) if tenants is not None else TENANTS.values()
    statuses = (*ATTEMPT_STATUSES, OTHER)
    reasons = (*ATTEMPT_REASONS, OTHER)
    for tenant in tenant_values:
        for status in (*RUN_STATUSES, OTHER):
            RUNS_FINISHED.labels(tenant, status)
        for status in statuses:
            TASK_DURATION.labels(tenant, status)
            for reason in ("none",) if status == "succeeded" else reasons:
                TASK_ATTEMPTS_FINISHED.labels(tenant, status, reason)
        TASK_START_LATENCY.labels(tenant)
        TASKS_DISPATCHED.labels(tenant)
        for kind in ("max_duration", "finish_by"):
            SLA_MISSES.labels(tenant, kind)
    for kind in (*EVENT_KINDS, OTHER):
        ENGINE_EVENT_LAG.labels(kind)
    for outcome in TICK_OUTCOMES:
        SCHEDULE_TICKS.labels(outcome)


initialise_label_values()

_SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def series_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name a registry's metrics can expose, as PromQL refers to them
    (``baton_runs_finished_total``, ``baton_task_duration_seconds_bucket`` ...), whether
    or not a sample has been recorded yet."""
    names: set[str] = set()
    for family in registry.collect():
        suffixes = _SERIES_SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names

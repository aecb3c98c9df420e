"""The states of a run and of a task run, and which of them are final.

Part of the DAG model: the decisions (:mod:`kernel.dag.decisions`) are made on these
states; ``backend.runs.models`` stores them.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    planned = "planned"  # a fire prepared ahead of its instant, not yet admissible
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class TaskStatus(StrEnum):
    pending = "pending"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"
    upstream_failed = "upstream_failed"


FINISHED_RUN = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})
FINISHED_TASK = frozenset(
    {
        TaskStatus.succeeded,
        TaskStatus.failed,
        TaskStatus.cancelled,
        TaskStatus.skipped,
        TaskStatus.upstream_failed,
    }
)

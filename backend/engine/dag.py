"""DAG advancement as pure functions over a run's task statuses.

Given the plan and the current status of every task of one run, these functions say which
pending tasks became ready, which can never run (an upstream failed), and whether the run
is over. They never touch the database, so they are easy to test and cheap to call for a
whole batch of events.
"""

from __future__ import annotations

from collections.abc import Mapping

from backend.engine.plan import RunPlan
from backend.runs.models import FINISHED_TASK, RunStatus, TaskStatus

_DEAD = frozenset({TaskStatus.failed, TaskStatus.upstream_failed, TaskStatus.cancelled})
_OK = frozenset({TaskStatus.succeeded, TaskStatus.skipped})


def advance(plan: RunPlan, statuses: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Return (newly ready, newly upstream_failed) pending tasks.

    A pending task is ready when every dependency succeeded; it is upstream_failed when any
    dependency failed, was cancelled or is itself upstream_failed (propagated to the end of
    the chain in one call).
    """
    current = dict(statuses)
    ready: list[str] = []
    doomed: list[str] = []
    changed = True
    while changed:
        changed = False
        for name, task in plan.tasks.items():
            if current.get(name) != TaskStatus.pending:
                continue
            upstream = [current.get(dep) for dep in task.depends_on]
            if any(status in _DEAD for status in upstream):
                current[name] = TaskStatus.upstream_failed
                doomed.append(name)
                changed = True
            elif all(status in _OK for status in upstream):
                current[name] = TaskStatus.queued
                ready.append(name)
    return ready, doomed


def run_outcome(statuses: Mapping[str, str]) -> RunStatus | None:
    """The run's final status once every task has finished, else None."""
    if any(status not in FINISHED_TASK for status in statuses.values()):
        return None
    if all(status in _OK for status in statuses.values()):
        return RunStatus.succeeded
    return RunStatus.failed

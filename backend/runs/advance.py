"""Apply DAG decisions to a run's task-run rows (shared by the trigger API and the engine).

:func:`advance_run` turns :func:`kernel.dag.decisions.decide`'s verdicts into row changes:
queued tasks get a ``ready_at``, skipped and upstream_failed ones an explanation, a
``for_each`` task becomes a running group with one child row per item, and the run is
settled - at once under ``failure_policy: fail_fast`` when a failure fails it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.runs.models import TaskRun
from backend.runs.rows import RunRow, TaskRow
from kernel.dag.decisions import Node, decide, fails_run, run_outcome
from kernel.dag.plan import RunPlan
from kernel.dag.status import FINISHED_TASK, RunStatus, TaskStatus

REASONS = {
    TaskStatus.skipped: "skipped",
    TaskStatus.upstream_failed: "upstream_failed",
}


@dataclass
class Advance:
    children: list[TaskRun] = field(default_factory=list)  # new for_each children to insert
    stop: list[TaskRow] = field(default_factory=list)  # dispatched tasks cancelled (fail_fast)
    queued: bool = False  # something became ready: the tenant has work to admit
    cancel_children: bool = False  # fail_fast: the run's unfinished children end too
    finished: bool = False


def run_context(run: RunRow) -> dict[str, Any]:
    """What expressions see besides ``tasks``: ``params`` and ``run``."""
    return {
        "params": run.params,
        "run": {
            "id": str(run.id),
            "job_id": str(run.job_id),
            "trigger": run.trigger,
            "scheduled_for": run.scheduled_for.isoformat() if run.scheduled_for else None,
        },
    }


def advance_run(
    plan: RunPlan, run: RunRow, tasks: Mapping[str, TaskRow], *, now: datetime, ready_at: datetime
) -> Advance:
    """Advance one run: decide every pending task, then settle the run if it is over.

    ``tasks`` are the run's top-level task runs by name; they are changed in place.
    """
    result = Advance()
    nodes = {name: Node(task.status, task.output) for name, task in tasks.items()}
    decision = decide(plan, nodes, run_context(run))
    for name in decision.run:
        tasks[name].status = TaskStatus.queued
        tasks[name].ready_at = ready_at
        result.queued = True
    for verdicts, status in (
        (decision.skipped, TaskStatus.skipped),
        (decision.upstream_failed, TaskStatus.upstream_failed),
    ):
        for name, why in verdicts.items():
            _finish(tasks[name], status, now, reason=REASONS[status], explanation=why)
    for name, error in decision.failed.items():
        _finish(tasks[name], TaskStatus.failed, now, reason="expression", explanation=error)
        tasks[name].error = error
    for name, items in decision.fan_out.items():
        result.children.extend(_fan_out(plan, tasks[name], items, now=now, ready_at=ready_at))
        result.queued = True

    if run.status in (RunStatus.queued, RunStatus.running):
        failing = sorted(n for n, t in tasks.items() if fails_run(plan, n, t.status))
        if failing and plan.failure_policy == "fail_fast":
            _fail_fast(run, tasks, failing, now, result)
        else:
            outcome = run_outcome(plan, {n: Node(t.status) for n, t in tasks.items()})
            if outcome is not None:
                run.status = outcome
                run.finished_at = now
                if failing:
                    run.reason = f"task failed: {', '.join(failing)}"
                result.finished = True
    return result


def _finish(task: TaskRow, status: str, now: datetime, *, reason: str, explanation: str) -> None:
    task.status = status
    task.finished_at = now
    task.reason = reason
    task.explanation = explanation


def _fan_out(
    plan: RunPlan, group: TaskRow, items: list[Any], *, now: datetime, ready_at: datetime
) -> list[TaskRun]:
    group.status = TaskStatus.running
    group.started_at = now
    task = plan.tasks[group.name]
    return [
        TaskRun(
            tenant_id=group.tenant_id,
            id=uuid.uuid4(),
            run_id=group.run_id,
            name=f"{group.name}[{index}]",
            queue=group.queue,
            status=TaskStatus.queued,
            max_attempts=task.retry.max_attempts,
            ready_at=ready_at,
            parent_id=group.id,
            map_index=index,
            item=item,
        )
        for index, item in enumerate(items)
    ]


def _fail_fast(
    run: RunRow, tasks: Mapping[str, TaskRow], failing: list[str], now: datetime, result: Advance
) -> None:
    why = f"task {failing[0]!r} failed (failure_policy fail_fast)"
    for task in tasks.values():
        if task.status in FINISHED_TASK:
            continue
        if task.dispatched_at is not None and task.status in (
            TaskStatus.queued,
            TaskStatus.running,
        ):
            result.stop.append(task)
        _finish(task, TaskStatus.cancelled, now, reason="fail_fast", explanation=why)
    run.status = RunStatus.failed
    run.finished_at = now
    run.reason = f"task failed: {', '.join(failing)}"
    result.cancel_children = True
    result.finished = True

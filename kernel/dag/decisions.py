"""DAG semantics as pure functions: trigger rules, conditions, fan-out, run outcome.

Given a run's plan and the state of each of its (top-level) tasks, :func:`decide` says
which pending tasks run, which are skipped or upstream_failed and why, which fail because
their expression could not be evaluated, and which fan out into children. It repeats until
nothing changes, so a skip or failure propagates to the end of the graph in one call. The
engine and the trigger API both call it; nothing here touches the database.

Trigger rules follow Airflow's meaning:

    all_success                  every upstream succeeded (a skip skips, a failure fails)
    all_failed                   every upstream failed or upstream_failed
    all_done                     every upstream finished, whatever the outcome
    one_success                  as soon as one upstream succeeded
    one_failed                   as soon as one upstream failed
    none_failed                  no upstream failed (succeeded or skipped)
    none_failed_min_one_success  no upstream failed and at least one succeeded

A cancelled upstream counts as failed. ``when`` is evaluated once the rule is satisfied;
false marks the task ``skipped``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kernel.dag.expressions import ExpressionError
from kernel.dag.plan import RunPlan, TaskPlan
from kernel.dag.status import FINISHED_TASK, RunStatus, TaskStatus

MAX_FANOUT = 10_000

_FAILED = frozenset({TaskStatus.failed, TaskStatus.upstream_failed, TaskStatus.cancelled})
_OK = frozenset({TaskStatus.succeeded, TaskStatus.skipped})

Verdict = Literal["wait", "run", "skip", "upstream_failed"]


@dataclass
class Node:
    """What decisions need to know of one task: its status and output."""

    status: str
    output: Any = None


@dataclass
class Decision:
    run: list[str] = field(default_factory=list)
    fan_out: dict[str, list[Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    upstream_failed: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # expression errors

    def __bool__(self) -> bool:
        return bool(self.run or self.fan_out or self.skipped or self.upstream_failed or self.failed)


def rule_verdict(rule: str, upstream: Mapping[str, str]) -> Verdict:
    """What the trigger rule says, given the upstream tasks' statuses (name -> status)."""
    statuses = list(upstream.values())
    done = all(s in FINISHED_TASK for s in statuses)
    succeeded = sum(s == TaskStatus.succeeded for s in statuses)
    failed = sum(s in _FAILED for s in statuses)
    skipped = sum(s == TaskStatus.skipped for s in statuses)
    if rule == "all_success":
        if failed:
            return "upstream_failed"
        if skipped:
            return "skip"
        return "run" if done else "wait"
    if rule == "all_failed":
        if succeeded or skipped:
            return "skip"
        return "run" if done else "wait"
    if rule == "all_done":
        return "run" if done else "wait"
    if rule == "one_success":
        if succeeded:
            return "run"
        if not done:
            return "wait"
        return "skip" if skipped == len(statuses) else "upstream_failed"
    if rule == "one_failed":
        if failed:
            return "run"
        return "skip" if done else "wait"
    if rule == "none_failed":
        if failed:
            return "upstream_failed"
        return "run" if done else "wait"
    if rule == "none_failed_min_one_success":
        if failed:
            return "upstream_failed"
        if not done:
            return "wait"
        return "run" if succeeded else "skip"
    raise ValueError(f"unknown trigger rule {rule!r}")


def _why(task: TaskPlan, upstream: Mapping[str, str], verdict: Verdict) -> str:
    def names(wanted: frozenset[str] | set[str]) -> str:
        return ", ".join(repr(n) for n, s in sorted(upstream.items()) if s in wanted)

    if verdict == "upstream_failed":
        return f"upstream {names(_FAILED)} did not succeed (trigger_rule {task.trigger_rule})"
    if task.trigger_rule == "all_success":
        return f"upstream {names({TaskStatus.skipped})} was skipped (trigger_rule all_success)"
    outcome = ", ".join(f"{n}: {s}" for n, s in sorted(upstream.items()))
    return f"trigger_rule {task.trigger_rule} not met ({outcome})"


def decide(plan: RunPlan, nodes: dict[str, Node], context: Mapping[str, Any]) -> Decision:
    """Advance every pending task as far as the current states allow.

    ``nodes`` is updated in place with the decided states; ``context`` carries ``params``
    and ``run`` for expressions (``tasks`` is filled in from ``nodes``).
    """
    decision = Decision()
    changed = True
    while changed:
        changed = False
        for name, task in plan.tasks.items():
            node = nodes[name]
            if node.status != TaskStatus.pending:
                continue
            upstream = {dep: nodes[dep].status for dep in task.depends_on}
            verdict: Verdict = rule_verdict(task.trigger_rule, upstream) if upstream else "run"
            if verdict == "wait":
                continue
            changed = True
            if verdict == "skip":
                node.status = TaskStatus.skipped
                decision.skipped[name] = _why(task, upstream, verdict)
            elif verdict == "upstream_failed":
                node.status = TaskStatus.upstream_failed
                decision.upstream_failed[name] = _why(task, upstream, verdict)
            else:
                _start(task, node, nodes, context, decision)
    return decision


def _start(
    task: TaskPlan,
    node: Node,
    nodes: Mapping[str, Node],
    context: Mapping[str, Any],
    decision: Decision,
) -> None:
    if task.when is None and task.for_each is None:
        # No expression reads the scope: do not build it (it is O(tasks in the run), and
        # was built for every task started, 12-15 % of the engine's time in dag1000).
        node.status = TaskStatus.queued
        decision.run.append(task.name)
        return
    scope = {
        **context,
        "tasks": {n: {"status": str(s.status), "output": s.output} for n, s in nodes.items()},
    }
    try:
        if task.when is not None and not task.when.truthy(scope):
            node.status = TaskStatus.skipped
            decision.skipped[task.name] = f"condition is false: {task.when.text}"
            return
        if task.for_each is None:
            node.status = TaskStatus.queued
            decision.run.append(task.name)
            return
        items = task.for_each.evaluate(scope)
    except ExpressionError as error:
        node.status = TaskStatus.failed
        decision.failed[task.name] = f"expression error: {error}"
        return
    if not isinstance(items, list):
        node.status = TaskStatus.failed
        decision.failed[task.name] = f"for_each gave {type(items).__name__}, not a list"
    elif len(items) > MAX_FANOUT:
        node.status = TaskStatus.failed
        decision.failed[task.name] = f"for_each gave {len(items)} items; at most {MAX_FANOUT}"
    elif not items:
        node.status = TaskStatus.skipped
        decision.skipped[task.name] = "for_each gave no items"
    else:
        node.status = TaskStatus.running
        decision.fan_out[task.name] = items


def fails_run(plan: RunPlan, name: str, status: str) -> bool:
    """Does this task's final status fail the run (``on_failure: fail_run`` and failed)?"""
    return status == TaskStatus.failed and plan.tasks[name].on_failure == "fail_run"


def run_outcome(plan: RunPlan, nodes: Mapping[str, Node]) -> RunStatus | None:
    """The run's final status once every task has finished, else None.

    A run fails when a task that fails the run (``on_failure: fail_run``) failed; tasks
    that ``continue`` on failure, and those skipped or upstream_failed because of them,
    do not fail it.
    """
    if any(node.status not in FINISHED_TASK for node in nodes.values()):
        return None
    if any(fails_run(plan, name, node.status) for name, node in nodes.items()):
        return RunStatus.failed
    return RunStatus.succeeded


def group_outcome(child_statuses: Mapping[str, int]) -> str | None:
    """A for_each group's status from its children's status counts, once all finished."""
    if any(status not in FINISHED_TASK for status in child_statuses):
        return None
    if set(child_statuses) <= {TaskStatus.succeeded}:
        return TaskStatus.succeeded
    return TaskStatus.failed


def reusable(plan: RunPlan, statuses: Mapping[str, str]) -> set[str]:
    """Tasks a re-run from failure may take over from the run it repeats.

    A task is reused only if it succeeded *and* every task upstream of it is reused too:
    anything downstream of a task that runs again must run again, because its old output
    was computed from results the re-run replaces (a task that ran under ``all_done`` or
    ``one_failed`` after a failure would otherwise keep an output built on that failure).
    """
    reused: set[str] = set()
    changed = True
    while changed:  # tasks are few; repeat until the closure is stable (any order)
        changed = False
        for name, task in plan.tasks.items():
            if name in reused or statuses.get(name) != TaskStatus.succeeded:
                continue
            if all(dep in reused for dep in task.depends_on):
                reused.add(name)
                changed = True
    return reused

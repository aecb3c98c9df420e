"""DAG semantics as pure functions: trigger rules, conditions, fan-out, outcomes."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from kernel.dag.decisions import (
    MAX_FANOUT,
    Node,
    decide,
    group_outcome,
    reusable,
    rule_verdict,
    run_outcome,
)
from kernel.dag.plan import PlanCache, RetryPolicy, RunPlan, compile_plan


def plan_of(*tasks: dict[str, Any], **job: Any) -> RunPlan:
    spec = {
        "name": "j",
        "tasks": [{"type": "python", "function": "m:f", "depends_on": [], **t} for t in tasks],
        **job,
    }
    return compile_plan(uuid.uuid4(), 1, spec)


def task(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "depends_on": list(deps), **extra}


def nodes(**statuses: str) -> dict[str, Node]:
    return {name: Node(status) for name, status in statuses.items()}


S, F, K, U, C, R, P = (
    "succeeded",
    "failed",
    "skipped",
    "upstream_failed",
    "cancelled",
    "running",
    "pending",
)

# (rule, upstream statuses, verdict) - Airflow's meaning of each rule.
RULES = [
    ("all_success", [S, S], "run"),
    ("all_success", [S, R], "wait"),
    ("all_success", [S, F], "upstream_failed"),
    ("all_success", [R, U], "upstream_failed"),
    ("all_success", [S, K], "skip"),
    ("all_success", [C, S], "upstream_failed"),
    ("all_failed", [F, U], "run"),
    ("all_failed", [F, R], "wait"),
    ("all_failed", [F, S], "skip"),
    ("all_failed", [F, K], "skip"),
    ("all_done", [S, F, K, U], "run"),
    ("all_done", [S, R], "wait"),
    ("one_success", [R, S], "run"),
    ("one_success", [F, R], "wait"),
    ("one_success", [F, U], "upstream_failed"),
    ("one_success", [K, K], "skip"),
    ("one_failed", [R, F], "run"),
    ("one_failed", [S, R], "wait"),
    ("one_failed", [S, K], "skip"),
    ("none_failed", [S, K], "run"),
    ("none_failed", [K, K], "run"),
    ("none_failed", [S, R], "wait"),
    ("none_failed", [S, F], "upstream_failed"),
    ("none_failed_min_one_success", [S, K], "run"),
    ("none_failed_min_one_success", [K, K], "skip"),
    ("none_failed_min_one_success", [K, R], "wait"),
    ("none_failed_min_one_success", [U, S], "upstream_failed"),
]


@pytest.mark.parametrize(("rule", "upstream", "verdict"), RULES)
def test_trigger_rules(rule: str, upstream: list[str], verdict: str) -> None:
    assert rule_verdict(rule, {f"u{i}": s for i, s in enumerate(upstream)}) == verdict


def test_diamond_runs_the_join_only_when_both_branches_succeeded() -> None:
    plan = plan_of(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
    state = nodes(a=S, b=S, c=R, d=P)
    assert not decide(plan, state, {"params": {}})
    state["c"] = Node(S)
    assert decide(plan, state, {"params": {}}).run == ["d"]


def test_failure_and_skip_propagate_to_the_end_of_the_chain() -> None:
    plan = plan_of(task("a"), task("b", "a"), task("c", "b"), task("x"), task("y", "x"))
    state = nodes(a=F, b=P, c=P, x=K, y=P)
    decision = decide(plan, state, {"params": {}})
    assert set(decision.upstream_failed) == {"b", "c"}
    assert set(decision.skipped) == {"y"}
    assert "'a'" in decision.upstream_failed["b"]
    assert "'x' was skipped" in decision.skipped["y"]


def test_when_false_skips_and_the_skip_propagates() -> None:
    plan = plan_of(
        task("check"),
        task("load", "check", when="tasks.check.output.rows > 0 and params.env == 'prod'"),
        task("report", "load"),
        task("always", "load", trigger_rule="none_failed"),
    )
    state = {"check": Node(S, {"rows": 0}), "load": Node(P), "report": Node(P), "always": Node(P)}
    decision = decide(plan, state, {"params": {"env": "prod"}})
    assert decision.skipped["load"].startswith("condition is false")
    assert "report" in decision.skipped
    assert decision.run == ["always"]


def test_when_true_runs() -> None:
    plan = plan_of(task("check"), task("load", "check", when="tasks.check.output.rows > 0"))
    decision = decide(plan, {"check": Node(S, {"rows": 3}), "load": Node(P)}, {"params": {}})
    assert decision.run == ["load"]


def test_expression_errors_fail_the_task_with_the_reason() -> None:
    plan = plan_of(task("check"), task("load", "check", when="tasks.check.output.rows > 'x'"))
    decision = decide(plan, {"check": Node(S, {"rows": 3}), "load": Node(P)}, {"params": {}})
    assert "load" in decision.failed and "expression" in decision.failed["load"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"files": ["a", "b", "c"]}, ("fan_out", 3)),
        ({"files": ["only"]}, ("fan_out", 1)),
        ({"files": []}, ("skipped", 0)),
        ({"files": "not a list"}, ("failed", 0)),
        ({"files": list(range(MAX_FANOUT + 1))}, ("failed", 0)),
    ],
)
def test_for_each(output: dict[str, Any], expected: tuple[str, int]) -> None:
    plan = plan_of(task("check"), task("each", "check", for_each="tasks.check.output.files"))
    state = {"check": Node(S, output), "each": Node(P)}
    decision = decide(plan, state, {"params": {}})
    kind, count = expected
    if kind == "fan_out":
        assert len(decision.fan_out["each"]) == count
        assert state["each"].status == R
    else:
        assert "each" in getattr(decision, kind)


def test_run_outcome_respects_on_failure() -> None:
    plan = plan_of(task("a", on_failure="continue"), task("b", "a"), task("c"))
    assert run_outcome(plan, nodes(a=F, b=U, c=S)) == "succeeded"
    assert run_outcome(plan, nodes(a=F, b=U, c=R)) is None
    strict = plan_of(task("a"), task("b", "a"))
    assert run_outcome(strict, nodes(a=F, b=U)) == "failed"
    assert run_outcome(strict, nodes(a=S, b=K)) == "succeeded"


def test_group_outcome() -> None:
    assert group_outcome({S: 3}) == S
    assert group_outcome({S: 2, F: 1}) == F
    assert group_outcome({S: 2, R: 1}) is None


def test_retry_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=6, initial_delay=1, factor=2, max_delay=5, jitter=False)
    assert [policy.delay_before(n) for n in range(2, 7)] == [1, 2, 4, 5, 5]


def test_jitter_stays_between_half_and_full_delay() -> None:
    policy = RetryPolicy(initial_delay=10, factor=1, max_delay=10, jitter=True)
    rng = random.Random(7)
    delays = [policy.delay_before(3, rng) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100


def test_task_queue_retry_and_rules_come_from_the_spec() -> None:
    plan = plan_of(
        task("a", timeout_seconds=5, retry={"max_attempts": 3, "initial_delay": 0.5}),
        task("b", "a", queue="gpu", trigger_rule="all_done", on_failure="continue"),
        queue="etl",
        failure_policy="continue",
    )
    assert plan.tasks["a"].queue == "etl" and plan.tasks["b"].queue == "gpu"
    assert plan.tasks["a"].retry.max_attempts == 3 and plan.tasks["a"].timeout_seconds == 5
    assert plan.tasks["b"].trigger_rule == "all_done" and plan.tasks["b"].on_failure == "continue"
    assert plan.failure_policy == "continue" and plan.roots == ["a"]


def test_plan_cache_is_bounded() -> None:
    cache = PlanCache(max_entries=2)
    tenant = uuid.uuid4()
    plans = [plan_of(task("a")) for _ in range(3)]
    for plan in plans:
        cache.put(tenant, plan)
    assert cache.get(tenant, plans[0].job_id, 1) is None
    assert cache.get(tenant, plans[2].job_id, 1) is plans[2]


def test_reusable_takes_only_succeeded_tasks_with_nothing_rerun_upstream() -> None:
    plan = plan_of(
        task("check"),
        task("extract", "check"),
        task("per_file", "extract"),
        task("flaky", "per_file"),
        task("after", "flaky", trigger_rule="all_done"),
        task("side", "check"),
    )
    statuses = {
        "check": S,
        "extract": S,
        "per_file": S,
        "flaky": F,
        "after": S,
        "side": S,
    }
    assert reusable(plan, statuses) == {"check", "extract", "per_file", "side"}
    assert reusable(plan, {**statuses, "check": F}) == set()

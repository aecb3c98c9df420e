"""DAG advancement and run outcome, as pure functions."""

from __future__ import annotations

import random
import uuid

from backend.engine.dag import advance, run_outcome
from backend.engine.plan import PlanCache, RetryPolicy, compile_plan


def plan_of(*tasks: tuple[str, list[str]]):  # type: ignore[no-untyped-def]
    spec = {
        "name": "j",
        "tasks": [
            {"name": n, "type": "python", "function": "m:f", "depends_on": d} for n, d in tasks
        ],
    }
    return compile_plan(uuid.uuid4(), 1, spec)


def test_diamond_becomes_ready_only_when_all_upstreams_succeed() -> None:
    plan = plan_of(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))
    assert plan.roots == ["a"]
    assert plan.downstream["a"] == ("b", "c")
    statuses = {"a": "succeeded", "b": "succeeded", "c": "running", "d": "pending"}
    assert advance(plan, statuses) == ([], [])
    statuses["c"] = "succeeded"
    assert advance(plan, statuses) == (["d"], [])


def test_failure_propagates_to_the_end_of_the_chain() -> None:
    plan = plan_of(("a", []), ("b", ["a"]), ("c", ["b"]), ("side", []))
    ready, doomed = advance(
        plan, {"a": "failed", "b": "pending", "c": "pending", "side": "running"}
    )
    assert ready == [] and sorted(doomed) == ["b", "c"]


def test_cancelled_upstream_dooms_downstream() -> None:
    plan = plan_of(("a", []), ("b", ["a"]))
    assert advance(plan, {"a": "cancelled", "b": "pending"}) == ([], ["b"])


def test_run_outcome() -> None:
    assert run_outcome({"a": "succeeded", "b": "running"}) is None
    assert run_outcome({"a": "succeeded", "b": "skipped"}) == "succeeded"
    assert run_outcome({"a": "succeeded", "b": "upstream_failed", "c": "failed"}) == "failed"
    assert run_outcome({"a": "cancelled"}) == "failed"


def test_retry_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=6, initial_delay=1, factor=2, max_delay=5, jitter=False)
    assert [policy.delay_before(n) for n in range(2, 7)] == [1, 2, 4, 5, 5]


def test_jitter_stays_between_half_and_full_delay() -> None:
    policy = RetryPolicy(initial_delay=10, factor=1, max_delay=10, jitter=True)
    rng = random.Random(7)
    delays = [policy.delay_before(3, rng) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100


def test_task_queue_and_retry_come_from_the_spec() -> None:
    spec = {
        "name": "j",
        "queue": "etl",
        "tasks": [
            {
                "name": "a",
                "type": "shell",
                "command": "true",
                "timeout_seconds": 5,
                "retry": {"max_attempts": 3, "initial_delay": 0.5},
            },
            {"name": "b", "type": "shell", "command": "true", "queue": "gpu"},
        ],
    }
    plan = compile_plan(uuid.uuid4(), 2, spec)
    assert plan.tasks["a"].queue == "etl" and plan.tasks["b"].queue == "gpu"
    assert plan.tasks["a"].retry.max_attempts == 3 and plan.tasks["a"].timeout_seconds == 5
    assert plan.tasks["b"].retry.max_attempts == 1


def test_plan_cache_is_bounded() -> None:
    cache = PlanCache(max_entries=2)
    tenant = uuid.uuid4()
    plans = [plan_of(("a", [])) for _ in range(3)]
    for plan in plans:
        cache.put(tenant, plan)
    assert cache.get(tenant, plans[0].job_id, 1) is None
    assert cache.get(tenant, plans[2].job_id, 1) is plans[2]

"""A job version's spec, compiled once into what the engine needs to run it.

Versions are immutable, so plans are cached by (tenant, job, version) for the life of the
process: advancing a DAG never re-parses the spec.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from kernel.dag.expressions import Expression, parse_expression

DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry): exponential, capped, jittered.

        Jitter is "equal jitter": half the delay fixed, half random, so retries of many
        tasks spread out without ever retrying sooner than half the nominal delay.
        """
        nominal = min(self.initial_delay * self.factor ** max(attempt - 2, 0), self.max_delay)
        if not self.jitter:
            return nominal
        return nominal / 2 + (rng or random).uniform(0, nominal / 2)


@dataclass(frozen=True)
class TaskPlan:
    name: str
    queue: str
    depends_on: tuple[str, ...]
    retry: RetryPolicy
    timeout_seconds: float | None
    spec: dict[str, Any]
    trigger_rule: str = "all_success"
    on_failure: str = "fail_run"
    when: Expression | None = None
    for_each: Expression | None = None


@dataclass(frozen=True)
class RunPlan:
    job_id: uuid.UUID
    version: int
    queue: str
    params: dict[str, Any]
    timeout_seconds: float | None
    tasks: dict[str, TaskPlan]
    downstream: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failure_policy: str = "fail_fast"

    @property
    def roots(self) -> list[str]:
        return [name for name, task in self.tasks.items() if not task.depends_on]


def compile_plan(job_id: uuid.UUID, version: int, spec: dict[str, Any]) -> RunPlan:
    """Turn a validated job spec (as stored in ``job_versions.spec``) into a plan."""
    queue = str(spec.get("queue") or DEFAULT_QUEUE)
    tasks: dict[str, TaskPlan] = {}
    downstream: dict[str, list[str]] = {}
    for raw in spec["tasks"]:
        retry = raw.get("retry") or {}
        name = str(raw["name"])
        depends_on = tuple(raw.get("depends_on") or ())
        tasks[name] = TaskPlan(
            name=name,
            queue=str(raw.get("queue") or queue),
            depends_on=depends_on,
            retry=RetryPolicy(**{k: v for k, v in retry.items() if v is not None}),
            timeout_seconds=raw.get("timeout_seconds"),
            spec=dict(raw),
            trigger_rule=str(raw.get("trigger_rule") or "all_success"),
            on_failure=str(raw.get("on_failure") or "fail_run"),
            when=parse_expression(raw["when"]) if raw.get("when") else None,
            for_each=parse_expression(raw["for_each"]) if raw.get("for_each") else None,
        )
        for upstream in depends_on:
            downstream.setdefault(upstream, []).append(name)
    return RunPlan(
        job_id=job_id,
        version=version,
        queue=queue,
        params=dict(spec.get("params") or {}),
        timeout_seconds=spec.get("timeout_seconds"),
        tasks=tasks,
        downstream={k: tuple(v) for k, v in downstream.items()},
        failure_policy=str(spec.get("failure_policy") or "fail_fast"),
    )


class PlanCache:
    """Compiled plans by (tenant, job, version); versions never change, so never stale."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._plans: dict[tuple[uuid.UUID, uuid.UUID, int], RunPlan] = {}
        self._max = max_entries

    def get(self, tenant_id: uuid.UUID, job_id: uuid.UUID, version: int) -> RunPlan | None:
        return self._plans.get((tenant_id, job_id, version))

    def put(self, tenant_id: uuid.UUID, plan: RunPlan) -> RunPlan:
        if len(self._plans) >= self._max:
            self._plans.pop(next(iter(self._plans)))
        self._plans[(tenant_id, plan.job_id, plan.version)] = plan
        return plan


# Plans of immutable job versions, shared by the trigger API and the engine in a process.
PLANS = PlanCache()

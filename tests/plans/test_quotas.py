"""Each plan limit refused where it applies, with one error code and its details.

The billed client (a hosted installation, ``BATON_BILLING=manual``) reads limits from the
``plans`` table; the suite's own client runs as on-prem and reads them from the configuration.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from backend.app import create_app
from backend.core.db import commit
from backend.core.settings import Settings
from backend.engine.admission import quota_of
from backend.plans.service import month_start, next_month_start
from backend.schedules.firing import fire_due
from backend.tenants.models import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import DEFAULT_PASSWORD, Account, create_tenant, unique_email
from tests.fixtures.schedules import ScheduledJob, fire, next_instant
from tests.plans.helpers import plan_for
from tests.runs.factories import create_job, python_task, trigger


def _next_month() -> str:
    return next_month_start(datetime.now(UTC)).isoformat()


async def test_runs_per_month(billed: AsyncClient, superuser: Account, owner: Account) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=2)
    job = await create_job(billed, owner, [python_task("a")])
    for _ in range(2):
        await trigger(billed, owner, job["id"], delay_seconds=3600)
    response = await billed.post(
        f"/api/v1/jobs/{job['id']}/runs", json={"delay_seconds": 3600}, headers=owner.headers
    )
    error = assert_error(response, 402, "quota_exceeded")
    assert error["details"] == {
        "limit": "runs_per_month",
        "allowed": 2,
        "usage": 2,
        "resets_at": _next_month(),
    }


async def test_a_batch_that_would_pass_the_limit_creates_nothing(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=3)
    job = await create_job(billed, owner, [python_task("a")])
    await trigger(billed, owner, job["id"], delay_seconds=3600)
    response = await billed.post(
        f"/api/v1/jobs/{job['id']}/runs/batch",
        json={"runs": [{"delay_seconds": 3600}] * 3},
        headers=owner.headers,
    )
    assert_error(response, 402, "quota_exceeded")
    listed = await billed.get("/api/v1/runs", headers=owner.headers)
    assert len(listed.json()["items"]) == 1


async def test_task_seconds_per_month(
    billed: AsyncClient, superuser: Account, owner: Account, owner_engine: AsyncEngine
) -> None:
    await plan_for(billed, superuser, owner, task_seconds_per_month=100)
    job = await create_job(billed, owner, [python_task("a")])
    run = await trigger(billed, owner, job["id"], delay_seconds=3600)
    await trigger(billed, owner, job["id"], delay_seconds=3600)  # 0 seconds used so far
    # The month's history as the engine would have written it: one task ran 100 seconds.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE task_runs SET started_at = now() - interval '100 seconds',"
                " finished_at = now() WHERE run_id = :run"
            ),
            {"run": run["id"]},
        )
    response = await billed.post(
        f"/api/v1/jobs/{job['id']}/runs", json={"delay_seconds": 3600}, headers=owner.headers
    )
    error = assert_error(response, 402, "quota_exceeded")
    assert error["details"]["limit"] == "task_seconds_per_month"
    assert error["details"]["usage"] == 100


async def test_members(billed: AsyncClient, superuser: Account, owner: Account) -> None:
    await plan_for(billed, superuser, owner, members=2)
    body = {"email": unique_email("m"), "role": "viewer", "password": DEFAULT_PASSWORD}
    first = await billed.post("/api/v1/members", json=body, headers=owner.headers)
    assert first.status_code == 201, first.text
    body = {**body, "email": unique_email("m")}
    second = await billed.post("/api/v1/members", json=body, headers=owner.headers)
    error = assert_error(second, 402, "quota_exceeded")
    assert error["details"] == {"limit": "members", "allowed": 2, "usage": 2, "resets_at": None}


async def test_api_requests_per_minute(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, api_requests_per_minute=5)
    answers = [(await billed.get("/api/v1/me", headers=owner.headers)) for _ in range(12)]
    statuses = [a.status_code for a in answers]
    # Five per minute; a minute boundary inside the loop allows five more at most.
    assert statuses.count(200) in (5, 10), statuses
    refused = next(a for a in answers if a.status_code != 200)
    error = assert_error(refused, 429, "quota_exceeded")
    assert error["details"]["limit"] == "api_requests_per_minute"
    assert error["details"]["allowed"] == 5
    assert int(refused.headers["retry-after"]) >= 1


async def test_another_tenant_is_not_limited(
    billed: AsyncClient, superuser: Account, owner: Account, stranger: Account
) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=0)
    job = await create_job(billed, stranger, [python_task("a")])
    await trigger(billed, stranger, job["id"], delay_seconds=3600)


async def test_on_prem_limits_come_from_the_configuration(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"billing": "none", "plan_limits": {"free": {"runs_per_month": 1}}}
    )
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        from httpx import ASGITransport

        transport = ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with AsyncClient(transport=transport, base_url="http://baton.test") as onprem:
            account = await create_tenant(onprem)
            job = await create_job(onprem, account, [python_task("a")])
            await trigger(onprem, account, job["id"], delay_seconds=3600)
            response = await onprem.post(
                f"/api/v1/jobs/{job['id']}/runs",
                json={"delay_seconds": 3600},
                headers=account.headers,
            )
            assert_error(response, 402, "quota_exceeded")


async def test_on_prem_ignores_the_plans_table(
    client: AsyncClient, superuser: Account, owner: Account
) -> None:
    """The suite's own app runs with billing "none" and no configured limits."""
    await plan_for(client, superuser, owner, runs_per_month=0)
    job = await create_job(client, owner, [python_task("a")])
    await trigger(client, owner, job["id"], delay_seconds=3600)


def test_admission_takes_the_plans_concurrency_and_weight(settings: Settings) -> None:
    tenant = Tenant(slug="p", name="p", plan="team")
    assert quota_of(tenant, settings, {"max_concurrent_tasks": 7, "weight": 3}) == (7, 3)
    own = Tenant(slug="o", name="o", plan="team", max_concurrent_tasks=2, weight=9)
    assert quota_of(own, settings, {"max_concurrent_tasks": 7, "weight": 3}) == (2, 9)


@pytest.mark.parametrize(
    ("now", "start", "reset"),
    [
        ("2026-12-31T23:59:59+00:00", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("2026-02-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
    ],
)
def test_monthly_period(now: str, start: str, reset: str) -> None:
    instant = datetime.fromisoformat(now)
    assert month_start(instant).isoformat() == start
    assert next_month_start(instant).isoformat() == reset


async def test_rerun_counts_as_a_run(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=1)
    job = await create_job(billed, owner, [python_task("a")])
    run = await trigger(billed, owner, job["id"], delay_seconds=3600)
    response = await billed.post(f"/api/v1/runs/{run['id']}/rerun", headers=owner.headers)
    error = assert_error(response, 402, "quota_exceeded")
    assert error["details"]["limit"] == "runs_per_month"


async def test_scheduled_jobs(billed: AsyncClient, superuser: Account, owner: Account) -> None:
    await plan_for(billed, superuser, owner, scheduled_jobs=1)
    cron = {"schedule": {"cron": "0 0 1 1 *"}}
    await create_job(billed, owner, [python_task("a")], **cron)
    spec = {"name": "second", "tasks": [python_task("a")], **cron}
    refused = await billed.post("/api/v1/jobs", json=spec, headers=owner.headers)
    error = assert_error(refused, 402, "quota_exceeded")
    assert error["details"] == {
        "limit": "scheduled_jobs",
        "allowed": 1,
        "usage": 1,
        "resets_at": None,
    }
    plain = await create_job(billed, owner, [python_task("a")])  # no schedule: allowed
    with_schedule = {"name": plain["name"], "tasks": [python_task("a")], **cron}
    update = await billed.put(
        f"/api/v1/jobs/{plain['id']}", json=with_schedule, headers=owner.headers
    )
    assert_error(update, 402, "quota_exceeded")


async def test_a_warning_when_crossing_80_percent(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=5)
    job = await create_job(billed, owner, [python_task("a")])
    with capture_logs() as logged:
        for _ in range(5):
            await trigger(billed, owner, job["id"], delay_seconds=3600)
    warnings = [e for e in logged if e["event"] == "quota.warning"]
    assert [(w["limit"], w["usage"], w["allowed"]) for w in warnings] == [("runs_per_month", 4, 5)]


async def test_usage_warns_at_80_percent(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, runs_per_month=5, members=10)
    job = await create_job(billed, owner, [python_task("a")])
    for _ in range(4):
        await trigger(billed, owner, job["id"], delay_seconds=3600)
    report = (await billed.get("/api/v1/usage", headers=owner.headers)).json()
    limits = {item["name"]: item for item in report["limits"]}
    assert limits["runs_per_month"] == {
        "name": "runs_per_month",
        "allowed": 5,
        "used": 4,
        "resets_at": _next_month().replace("+00:00", "Z"),
        "warning": True,
    }
    assert limits["members"]["warning"] is False
    assert limits["scheduled_jobs"]["allowed"] is None


async def test_scheduled_instants_past_the_runs_quota_are_skipped_in_the_ledger(
    billed: AsyncClient,
    hosted_app: Any,
    superuser: Account,
    owner: Account,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """A scheduled fire the plan has no runs left for: its tick is ``skipped`` with the
    quota's error code in the reason, and no run is made; the earliest instants fire while
    some quota is left."""
    await plan_for(billed, superuser, owner, runs_per_month=2)
    job = await scheduled_job(
        owner, via=billed, tasks=[python_task("a")], misfire="fire_all", max_catchup=10
    )
    await trigger(billed, owner, job["id"], delay_seconds=3600)  # one of the two used
    async with owner_engine.begin() as conn:  # the scheduler last looked 4 s ago
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - interval '4 seconds', "
                "next_due_at = now() - interval '4 seconds' WHERE job_id = :job"
            ),
            {"job": job["id"]},
        )
    async with hosted_app.state.sessionmaker() as session:
        report, _ = await fire_due(
            session,
            hosted_app.state.redis,
            owner.tenant_id,
            fence=1,
            settings=hosted_app.state.settings,
        )
        await commit(session)
    paused = await billed.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200, paused.text
    async with owner_engine.connect() as conn:
        ticks = (
            await conn.execute(
                text(
                    "SELECT scheduled_for, outcome, reason, run_id FROM schedule_ticks "
                    "WHERE job_id = :job ORDER BY scheduled_for"
                ),
                {"job": job["id"]},
            )
        ).all()
        runs = (
            await conn.execute(
                text("SELECT id FROM runs WHERE job_id = :job AND trigger = 'schedule'"),
                {"job": job["id"]},
            )
        ).all()
    assert len(ticks) >= 3 and report.fired == 1
    assert ticks[0].outcome == "fired" and [r.id for r in runs] == [ticks[0].run_id]
    for tick in ticks[1:]:
        assert tick.outcome == "skipped" and tick.run_id is None
        assert tick.reason.startswith("quota_exceeded: runs_per_month limit of 2 reached")


class _PreparedFire:
    """A job on an every-minute schedule, with passes of the scheduler driven by hand."""

    def __init__(self, hosted_app: Any, owner_engine: AsyncEngine, job: dict[str, Any]) -> None:
        self.app, self.engine, self.job = hosted_app, owner_engine, job

    async def instant(self) -> datetime:
        return await next_instant(self.engine, self.job["id"])

    async def fire(self, owner: Account, now: datetime) -> None:
        await fire(self.app, owner, now, settings=self.app.state.settings)

    async def runs(self) -> list[Any]:
        async with self.engine.connect() as conn:
            query = "SELECT id, status FROM runs WHERE job_id = :job AND trigger = 'schedule'"
            return list((await conn.execute(text(query), {"job": self.job["id"]})).all())

    async def tick(self, at: datetime) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    text(
                        "SELECT outcome, reason, run_id FROM schedule_ticks "
                        "WHERE job_id = :job AND scheduled_for = :at"
                    ),
                    {"job": self.job["id"], "at": at},
                )
            ).one()


async def test_a_released_fire_reserves_its_run_of_the_month_when_prepared(
    billed: AsyncClient,
    hosted_app: Any,
    superuser: Account,
    owner: Account,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """A fire released ahead (admissible at its instant with no further decision) is a run
    of the month from its preparation: a manual trigger cannot take the run it reserved,
    and it fires at its instant."""
    await plan_for(billed, superuser, owner, runs_per_month=1)
    job = await scheduled_job(owner, via=billed, tasks=[python_task("a")], cron="* * * * *")
    prepared = _PreparedFire(hosted_app, owner_engine, job)
    instant = await prepared.instant()
    await prepared.fire(owner, instant - timedelta(seconds=30))
    [run] = await prepared.runs()
    assert run.status == "queued"  # released
    response = await billed.post(f"/api/v1/jobs/{job['id']}/runs", json={}, headers=owner.headers)
    assert_error(response, 402, "quota_exceeded")
    await prepared.fire(owner, instant + timedelta(milliseconds=100))
    tick = await prepared.tick(instant)
    assert tick.outcome == "fired" and tick.run_id == run.id
    assert [r.id for r in await prepared.runs()] == [run.id]


async def test_a_fire_prepared_past_the_quota_is_decided_at_its_instant(
    billed: AsyncClient,
    hosted_app: Any,
    superuser: Account,
    owner: Account,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """With no run of the month left to reserve, a fire is prepared but not released (not
    an active run, not admissible): at its instant the quota is checked as for any fire and
    its tick is ``skipped`` with the quota's code, its prepared run gone."""
    await plan_for(billed, superuser, owner, runs_per_month=1)
    job = await scheduled_job(owner, via=billed, tasks=[python_task("a")], cron="* * * * *")
    prepared = _PreparedFire(hosted_app, owner_engine, job)
    instant = await prepared.instant()
    await trigger(billed, owner, job["id"])  # the month's one run
    await prepared.fire(owner, instant - timedelta(seconds=30))
    assert [r.status for r in await prepared.runs()] == ["planned"]
    await prepared.fire(owner, instant + timedelta(milliseconds=100))
    assert await prepared.runs() == []
    tick = await prepared.tick(instant)
    assert tick.outcome == "skipped" and tick.run_id is None
    assert tick.reason.startswith("quota_exceeded: runs_per_month limit of 1 reached")

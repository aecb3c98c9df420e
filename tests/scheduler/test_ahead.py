"""Fires prepared ahead of their instant (real PostgreSQL and Redis).

A pass ``ahead`` seconds before an instant inserts the fire's run and task runs and a
``planned`` tick. A fire nothing can refuse at its instant (an ``allow`` job of an active
tenant within its quota) is *released*: its run ``queued`` and its tasks ready at the
instant, so admission takes it then with no write; the pass at the instant records its
tick ``fired``. Any other (``forbid``) is prepared ``planned`` (tasks without ``ready_at``:
admission cannot see them) and handed over by the pass at the instant. The passes here are
driven with an explicit ``now`` around each instant, so nothing waits for the clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit, scope_to_tenant
from backend.core.settings import Settings
from backend.engine.admission import next_ready_at
from backend.scheduler.loop import Scheduler
from backend.schedules.firing import fire_due
from backend.schedules.service import StaleLease, cron_of
from kernel.cron import next_fire
from tests.admin.helpers import resume_url, suspend_url
from tests.fixtures.factories import Account
from tests.fixtures.schedules import (
    ScheduledJob,
    fire,
    kill_replica,
    next_instant,
    start_replica,
    stop_replica,
)
from tests.fixtures.waiting import eventually
from tests.runs.factories import python_task, trigger

EVERY_MINUTE = "* * * * *"
EVERY_SECOND = "* * * * * *"
AHEAD = 60.0
FORBID = {"concurrency_policy": "forbid"}  # decided at the instant: handed over then


async def place(
    owner_engine: AsyncEngine, job_id: str, spec: dict[str, Any], at: datetime
) -> datetime:
    """Pretend the scheduler has looked up to ``at``: the schedule's next instant after it."""
    due = next_fire(cron_of(spec), at)
    assert due is not None
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = :at, next_due_at = :due, planned_for = NULL "
                "WHERE job_id = :job"
            ),
            {"at": at, "due": due, "job": job_id},
        )
    return due


async def runs_of(owner_engine: AsyncEngine, job_id: str) -> list[Any]:
    """Every run of the job the schedule made (prepared ones too)."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, scheduled_for, run_at, status, job_version, created_at FROM runs "
                "WHERE job_id = :job AND trigger = 'schedule' ORDER BY scheduled_for"
            ),
            {"job": job_id},
        )
        return list(rows.all())


async def tasks_of(owner_engine: AsyncEngine, run_id: uuid.UUID) -> list[Any]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, ready_at, dispatched_at FROM task_runs WHERE run_id = :run"),
            {"run": run_id},
        )
        return list(rows.all())


async def ledger(owner_engine: AsyncEngine, job_id: str) -> dict[datetime, Any]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT scheduled_for, wall_time, outcome, reason, run_id FROM schedule_ticks "
                "WHERE job_id = :job ORDER BY scheduled_for"
            ),
            {"job": job_id},
        )
        return {row.scheduled_for: row for row in rows.all()}


async def fired_events(owner_engine: AsyncEngine, run_id: uuid.UUID) -> int:
    """``schedule.fired`` events of the run, sealed or still pending."""
    async with owner_engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM audit_events "
                        "        WHERE action = 'schedule.fired' AND target_id = :run)"
                        "     + (SELECT count(*) FROM audit_pending "
                        "        WHERE action = 'schedule.fired' AND target_id = :run)"
                    ),
                    {"run": str(run_id)},
                )
            ).scalar_one()
        )


async def edit(client: AsyncClient, owner: Account, job: dict[str, Any], **changes: Any) -> None:
    """Update the job (a new version) with these top-level changes to its spec."""
    current = await client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers)
    assert current.status_code == 200, current.text
    body = current.json()
    spec = {**body["spec"], "name": body["name"], **changes}
    response = await client.put(f"/api/v1/jobs/{job['id']}", json=spec, headers=owner.headers)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------ hand-over


async def test_a_released_fire_is_admissible_at_its_instant_with_nothing_written_then(
    owner: Account, app: FastAPI, owner_engine: AsyncEngine, scheduled_job: ScheduledJob
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])

    prepared_at = instant - timedelta(seconds=30)
    await fire(app, owner, prepared_at)
    [run] = await runs_of(owner_engine, job["id"])
    assert run.status == "queued" and run.scheduled_for == instant and run.run_at == instant
    assert run.created_at == prepared_at  # its run of the month is reserved from now
    assert all(
        t.status == "queued" and t.ready_at == instant and t.dispatched_at is None
        for t in await tasks_of(owner_engine, run.id)
    )
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "planned" and tick.run_id == run.id
    async with app.state.sessionmaker() as session:  # ready at the instant, not before
        await scope_to_tenant(session, owner.tenant_id)
        assert await next_ready_at(session, owner.tenant_id) == instant
    assert await fired_events(owner_engine, run.id) == 0
    assert await fire(app, owner, instant - timedelta(seconds=29)) == instant

    at = instant + timedelta(milliseconds=200)
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        report, _ = await fire_due(
            session, app.state.redis, owner.tenant_id, fence=1, now=at, ahead=AHEAD
        )
        await commit(session)
    assert (report.fired, report.recorded, report.released) == (0, 1, [])
    [same] = [r for r in await runs_of(owner_engine, job["id"]) if r.scheduled_for == instant]
    assert same == run  # nothing about the run was written at its instant
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[instant].outcome == "fired" and ticks[instant].run_id == run.id
    assert await fired_events(owner_engine, run.id) == 1

    await fire(app, owner, at + timedelta(milliseconds=50))  # prepares the next instant
    await fire(app, owner, at + timedelta(milliseconds=100))  # and nothing twice
    runs = await runs_of(owner_engine, job["id"])
    assert [r.id for r in runs if r.scheduled_for == instant] == [run.id]
    following = instant + timedelta(minutes=1)
    assert [r.status for r in runs if r.scheduled_for == following] == ["queued"]
    assert await fired_events(owner_engine, run.id) == 1


async def test_a_released_fire_recorded_by_a_late_pass_is_fired_not_missed(
    owner: Account, app: FastAPI, owner_engine: AsyncEngine, scheduled_job: ScheduledJob
) -> None:
    """A released fire was admissible at its instant whether or not a scheduler was up
    then: a pass long after (past the misfire grace) records it ``fired``; only the instants
    that were not prepared are left to the misfire policy."""
    job = await scheduled_job(owner, cron=EVERY_MINUTE, misfire="skip")
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    [run] = await runs_of(owner_engine, job["id"])
    await fire(app, owner, instant + timedelta(minutes=5, seconds=1))
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[instant].outcome == "fired" and ticks[instant].run_id == run.id
    missed = [ticks[instant + timedelta(minutes=m)] for m in range(1, 5)]
    assert all(t.outcome == "missed" and "misfire: skip" in t.reason for t in missed)
    last = ticks[instant + timedelta(minutes=5)]  # a second ago: within the grace
    assert last.outcome == "fired"
    assert [r.id for r in await runs_of(owner_engine, job["id"])] == [run.id, last.run_id]


async def test_a_forbid_jobs_prepared_fire_is_invisible_until_its_instant_then_handed_over(
    owner: Account, app: FastAPI, owner_engine: AsyncEngine, scheduled_job: ScheduledJob
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE, job=FORBID)
    instant = await next_instant(owner_engine, job["id"])

    await fire(app, owner, instant - timedelta(seconds=30))  # within the horizon
    [run] = await runs_of(owner_engine, job["id"])
    assert run.status == "planned" and run.scheduled_for == instant and run.run_at == instant
    assert all(
        t.status == "queued" and t.ready_at is None for t in await tasks_of(owner_engine, run.id)
    )
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "planned" and tick.run_id == run.id
    async with app.state.sessionmaker() as session:  # admission sees no ready work
        await scope_to_tenant(session, owner.tenant_id)
        assert await next_ready_at(session, owner.tenant_id) is None
    assert await fired_events(owner_engine, run.id) == 0

    prepared_wake = await fire(app, owner, instant - timedelta(seconds=29))
    assert prepared_wake == instant  # prepared: the tenant needs a pass at the instant
    at = instant + timedelta(milliseconds=200)
    wake = await fire(app, owner, at)
    runs = await runs_of(owner_engine, job["id"])
    handed = next(r for r in runs if r.scheduled_for == instant)
    assert handed.id == run.id and handed.status == "queued" and handed.created_at == at
    assert all(t.ready_at == instant for t in await tasks_of(owner_engine, run.id))
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[instant].outcome == "fired" and ticks[instant].run_id == run.id
    assert await fired_events(owner_engine, run.id) == 1
    # the pass that handed it over did only that; the next pass prepares the next instant
    following = instant + timedelta(minutes=1)
    assert following not in ticks
    assert wake is not None and wake <= at  # due again at once, to prepare it
    await fire(app, owner, at + timedelta(milliseconds=50))
    assert (await ledger(owner_engine, job["id"]))[following].outcome == "planned"
    async with app.state.sessionmaker() as session:  # the next one is not ready at all yet
        await scope_to_tenant(session, owner.tenant_id)
        assert await next_ready_at(session, owner.tenant_id) == instant

    await fire(app, owner, at + timedelta(milliseconds=100))  # again: nothing twice
    again = await runs_of(owner_engine, job["id"])
    assert [r.id for r in again if r.scheduled_for == instant] == [run.id]
    assert await fired_events(owner_engine, run.id) == 1


async def test_a_takeover_between_preparing_and_the_instant_loses_and_duplicates_nothing(
    owner: Account, app: FastAPI, owner_engine: AsyncEngine, scheduled_job: ScheduledJob
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=20), fence=1)  # the old leaseholder
    [planned] = await runs_of(owner_engine, job["id"])
    await fire(app, owner, instant + timedelta(milliseconds=100), fence=2)  # the heir
    with pytest.raises(StaleLease):  # the old one cannot hand over nor prepare any more
        async with app.state.sessionmaker() as session:
            await scope_to_tenant(session, owner.tenant_id)
            await fire_due(
                session,
                app.state.redis,
                owner.tenant_id,
                fence=1,
                now=instant + timedelta(minutes=1, seconds=1),
                ahead=AHEAD,
            )
    runs = await runs_of(owner_engine, job["id"])
    assert [(r.id, r.status) for r in runs if r.scheduled_for == instant] == [
        (planned.id, "queued")
    ]
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[instant].outcome == "fired" and ticks[instant].run_id == planned.id
    assert len({r.scheduled_for for r in runs}) == len(runs)


# ------------------------------------------------------------ edits before the instant


async def test_a_cron_change_before_the_instant_drops_the_prepared_fire(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    [planned] = await runs_of(owner_engine, job["id"])
    await edit(client, owner, job, schedule={"cron": "0 0 1 1 *"})  # yearly: not this instant
    assert await runs_of(owner_engine, job["id"]) == []
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "superseded" and tick.run_id is None
    assert "changed (version 2)" in tick.reason
    await fire(app, owner, instant + timedelta(milliseconds=100))
    assert await runs_of(owner_engine, job["id"]) == []  # the stale plan did not fire
    assert (await ledger(owner_engine, job["id"]))[instant].outcome == "superseded"
    assert await fired_events(owner_engine, planned.id) == 0


async def test_an_edit_after_a_released_fires_instant_leaves_that_fire_standing(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """Once its instant has come, a released fire was admissible: an edit that comes later
    (before any pass recorded it) drops nothing, and the next pass records it ``fired``."""
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    spec = {"cron": EVERY_MINUTE}
    instant = await place(owner_engine, job["id"], spec, datetime.now(UTC) - timedelta(minutes=2))
    await fire(app, owner, instant - timedelta(seconds=30))
    [run] = await runs_of(owner_engine, job["id"])
    assert run.status == "queued" and run.run_at == instant < datetime.now(UTC)
    await edit(client, owner, job, tasks=[python_task("noop"), python_task("other")])
    assert [r.id for r in await runs_of(owner_engine, job["id"])] == [run.id]
    assert (await ledger(owner_engine, job["id"]))[instant].outcome == "planned"
    await fire(app, owner, instant + timedelta(milliseconds=100))
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "fired" and tick.run_id == run.id
    assert await fired_events(owner_engine, run.id) == 1


async def test_a_released_fire_with_a_task_dispatched_is_not_dropped(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """A fire an engine has begun to run (its clock ahead of the database's, say) has
    fired: pausing before its instant by the database's clock drops nothing of it."""
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    [run] = await runs_of(owner_engine, job["id"])
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE task_runs SET dispatched_at = now() WHERE run_id = :run"),
            {"run": run.id},
        )
    paused = await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200, paused.text
    assert [r.id for r in await runs_of(owner_engine, job["id"])] == [run.id]
    assert (await ledger(owner_engine, job["id"]))[instant].outcome == "planned"


@pytest.mark.parametrize("prepared_again", [True, False])
async def test_a_job_change_before_the_instant_fires_the_new_version(
    prepared_again: bool,
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    [stale] = await runs_of(owner_engine, job["id"])
    assert stale.job_version == 1
    await edit(client, owner, job, tasks=[python_task("noop"), python_task("other")])
    if prepared_again:  # a pass before the instant prepares it from the new version
        await fire(app, owner, instant - timedelta(seconds=10))
        [fresh] = await runs_of(owner_engine, job["id"])
        assert fresh.status == "queued" and fresh.job_version == 2 and fresh.id != stale.id
        assert (await ledger(owner_engine, job["id"]))[instant].outcome == "planned"
    await fire(app, owner, instant + timedelta(milliseconds=100))
    runs = [r for r in await runs_of(owner_engine, job["id"]) if r.scheduled_for == instant]
    assert [(r.status, r.job_version) for r in runs] == [("queued", 2)]
    assert len(await tasks_of(owner_engine, runs[0].id)) == 2
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "fired" and tick.run_id == runs[0].id
    assert "superseded earlier: the job was changed (version 2)" in tick.reason


async def test_pause_before_the_instant_drops_the_prepared_fire_and_resume_prepares_it_again(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=40))
    paused = await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200
    assert await runs_of(owner_engine, job["id"]) == []
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "superseded" and "paused before this instant" in tick.reason
    await fire(app, owner, instant - timedelta(seconds=30))  # paused: nothing prepared
    assert await runs_of(owner_engine, job["id"]) == []

    resumed = await client.post(f"/api/v1/jobs/{job['id']}/resume", headers=owner.headers)
    assert resumed.status_code == 200
    await fire(app, owner, instant - timedelta(seconds=20))  # prepared again
    [planned] = await runs_of(owner_engine, job["id"])
    assert planned.status == "queued"  # released again
    await fire(app, owner, instant + timedelta(milliseconds=100))
    [run] = [r for r in await runs_of(owner_engine, job["id"]) if r.scheduled_for == instant]
    assert run.id == planned.id and run.status == "queued"
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "fired" and "superseded earlier" in tick.reason


async def test_paused_across_the_instant_the_misfire_policy_decides_on_resume(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE, misfire="skip")
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    await fire(app, owner, instant + timedelta(seconds=1))  # paused at the instant
    await client.post(f"/api/v1/jobs/{job['id']}/resume", headers=owner.headers)
    await fire(app, owner, instant + timedelta(minutes=5))  # resumed long after
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "skipped" and tick.run_id is None
    assert "misfire: skip" in tick.reason and "superseded earlier" in tick.reason
    assert all(r.scheduled_for != instant for r in await runs_of(owner_engine, job["id"]))


async def test_deleting_the_job_before_the_instant_drops_the_prepared_fire(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE)
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    deleted = await client.delete(f"/api/v1/jobs/{job['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert await runs_of(owner_engine, job["id"]) == []
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "superseded" and "deleted" in tick.reason
    await fire(app, owner, instant + timedelta(milliseconds=100))
    assert await runs_of(owner_engine, job["id"]) == []


# ------------------------------------------------- what is decided at the instant


async def test_forbid_is_decided_at_the_instant_not_when_preparing(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron=EVERY_MINUTE, job={"concurrency_policy": "forbid"})
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    # the prepared fire is not an active run: a manual trigger is not refused for it
    manual = await trigger(
        client, owner, job["id"], run_at=(instant + timedelta(hours=1)).isoformat()
    )
    await fire(app, owner, instant + timedelta(milliseconds=100))  # the manual run is active
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "skipped" and "forbids concurrent runs" in tick.reason
    assert manual["id"] in tick.reason
    assert all(r.scheduled_for != instant for r in await runs_of(owner_engine, job["id"]))
    await client.post(f"/api/v1/runs/{manual['id']}/cancel", headers=owner.headers)


@pytest.mark.parametrize("policy", ["allow", "forbid"])
async def test_a_tenant_suspended_before_the_instant_does_not_fire(
    policy: str,
    client: AsyncClient,
    owner: Account,
    superuser: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """Suspending a tenant drops its prepared fires, released or not: its instants while
    suspended are ``skipped``, and none of them runs on resume."""
    job = await scheduled_job(owner, cron=EVERY_MINUTE, job={"concurrency_policy": policy})
    instant = await next_instant(owner_engine, job["id"])
    await fire(app, owner, instant - timedelta(seconds=30))
    [prepared] = await runs_of(owner_engine, job["id"])
    assert prepared.status == ("queued" if policy == "allow" else "planned")
    suspended = await client.post(suspend_url(owner.tenant_id), headers=superuser.headers)
    assert suspended.status_code == 200, suspended.text
    try:
        assert await runs_of(owner_engine, job["id"]) == []
        tick = (await ledger(owner_engine, job["id"]))[instant]
        assert tick.outcome == "superseded" and "suspended before this instant" in tick.reason
        await fire(app, owner, instant + timedelta(milliseconds=100))
    finally:
        resumed = await client.post(resume_url(owner.tenant_id), headers=superuser.headers)
        assert resumed.status_code == 200, resumed.text
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome == "skipped" and tick.reason.startswith("tenant suspended")
    assert all(r.scheduled_for != instant for r in await runs_of(owner_engine, job["id"]))


# ------------------------------------------------------------------------------ DST


async def test_both_instants_of_a_fall_back_night_are_prepared_and_fired(
    owner: Account, app: FastAPI, owner_engine: AsyncEngine, scheduled_job: ScheduledJob
) -> None:
    spec = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "dst_overlap": "both"}
    job = await scheduled_job(
        owner, **{k: v for k, v in spec.items() if k != "cron"}, cron=spec["cron"]
    )
    first = await place(owner_engine, job["id"], spec, datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    hours = 2 * 3600.0
    await fire(app, owner, first - timedelta(seconds=30), ahead=hours)
    await fire(app, owner, first + timedelta(seconds=1), ahead=hours)  # hands over
    await fire(app, owner, first + timedelta(seconds=2), ahead=hours)  # prepares the second
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[first].outcome == "fired" and ticks[second].outcome == "planned"
    await fire(app, owner, second + timedelta(seconds=1), ahead=hours)
    ticks = await ledger(owner_engine, job["id"])
    runs = await runs_of(owner_engine, job["id"])
    assert [r.scheduled_for for r in runs] == [first, second]
    for instant, run in zip((first, second), runs, strict=True):
        assert ticks[instant].outcome == "fired" and ticks[instant].run_id == run.id
        assert ticks[instant].wall_time == "2026-10-25T02:30:00"


@pytest.mark.parametrize(("gap", "expected"), [("shift", "fired"), ("skip", "skipped")])
async def test_a_spring_forward_gap_with_prepared_fires(
    gap: str,
    expected: str,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    spec = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "dst_gap": gap}
    job = await scheduled_job(owner, timezone="Europe/Berlin", dst_gap=gap, cron=spec["cron"])
    instant = await place(owner_engine, job["id"], spec, datetime(2026, 3, 28, 12, tzinfo=UTC))
    await fire(app, owner, instant - timedelta(seconds=30))
    [planned] = await runs_of(owner_engine, job["id"])
    assert planned.status == "queued" and planned.scheduled_for == instant
    await fire(app, owner, instant + timedelta(seconds=1))
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[instant].outcome == "fired" and ticks[instant].run_id == planned.id
    gap_night = [t for t in ticks.values() if t.wall_time == "2026-03-29T02:30:00"]
    assert [t.outcome for t in gap_night] == [expected]
    assert "dst_gap" in (gap_night[0].reason or "")
    if gap == "shift":  # 02:30 does not exist that night: it fired at 03:00 CEST
        assert instant == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    else:  # no fire that night; the next day's was the one prepared
        assert instant == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


# ----------------------------------------------------------------- real replicas


async def test_a_replica_killed_with_a_prepared_fire_its_heir_hands_that_fire_over(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    engine_settings: Settings,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """The prepared fire of a replica killed before its instant is handed over by the
    replica that takes the tenant - the same run, once - and nothing is lost."""
    settings = engine_settings.model_copy(
        update={
            "scheduler_lease_seconds": 1.5,
            "scheduler_poll_seconds": 0.1,
            "scheduler_ahead_seconds": 5.0,
        }
    )
    job = await scheduled_job(owner, cron=EVERY_SECOND)
    prepared: list[Any] = []
    for attempt in range(5):  # a kill right after a hand-over, before the next is prepared,
        # leaves nothing prepared: that replica's heir has nothing to show here; kill again
        doomed, doomed_task = await start_replica(app, settings, f"ahead-doomed-{attempt}")
        try:
            await eventually(lambda d=doomed: d.fired, lambda fired: fired >= 1, what="a fire")

            async def prepared_between_passes(d: Scheduler = doomed) -> bool:
                ticks = await ledger(owner_engine, job["id"])
                return not d.passing and any(t.outcome == "planned" for t in ticks.values())

            await eventually(prepared_between_passes, what="a prepared fire, between passes")
        finally:
            await kill_replica(doomed, doomed_task, owner_engine)
        prepared = [
            t for t in (await ledger(owner_engine, job["id"])).values() if t.outcome == "planned"
        ]
        if prepared:
            break
    assert prepared, "a killed replica had prepared the next fire"
    heir, heir_task = await start_replica(app, settings, "ahead-heir")
    try:
        await eventually(
            lambda: ledger(owner_engine, job["id"]),
            lambda ticks: (
                ticks[prepared[0].scheduled_for].outcome == "fired"
                and any(
                    at > prepared[0].scheduled_for and t.outcome == "fired"
                    for at, t in ticks.items()
                )
            ),
            what="the prepared fire handed over by the heir, and one after it",
        )
    finally:
        await stop_replica(heir, heir_task)
    ticks = await ledger(owner_engine, job["id"])
    assert ticks[prepared[0].scheduled_for].run_id == prepared[0].run_id  # the same run
    runs = await runs_of(owner_engine, job["id"])
    assert len(runs) == len({r.scheduled_for for r in runs})  # none duplicated
    instants = sorted(ticks)
    assert len(instants) == int((instants[-1] - instants[0]).total_seconds()) + 1  # none lost
    fired = {t.run_id for t in ticks.values() if t.outcome == "fired"}
    assert fired == {r.id for r in runs if ticks[r.scheduled_for].outcome != "planned"}


async def test_a_new_schedules_first_fire_is_prepared_by_the_next_pass_not_at_its_instant(
    owner: Account,
    app: FastAPI,
    engine_settings: Settings,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """Creating a schedule asks the schedulers to look at the tenant now, so a replica's
    next pass prepares its first fire when the instant is within the window - here an hour
    - instead of finding the tenant only at the instant, too late to prepare anything."""
    settings = engine_settings.model_copy(update={"scheduler_ahead_seconds": 3600.0})
    job = await scheduled_job(owner, cron="0 * * * *")
    instant = await next_instant(owner_engine, job["id"])
    replica, task = await start_replica(app, settings, "ahead-first-fire")
    try:
        await eventually(
            lambda: ledger(owner_engine, job["id"]),
            lambda ticks: instant in ticks,
            what="the first fire prepared",
        )
    finally:
        await stop_replica(replica, task)
    tick = (await ledger(owner_engine, job["id"]))[instant]
    assert tick.outcome in ("planned", "fired") and tick.run_id is not None

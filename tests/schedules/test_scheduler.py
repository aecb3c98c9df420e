"""The cron scheduler against real PostgreSQL and Redis: fires, ledger, misfires, leases."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit, scope_to_tenant
from backend.core.settings import Settings
from backend.scheduler.loop import Scheduler, _claim_concurrency
from backend.schedules.firing import fire_due
from backend.schedules.service import StaleLease, decide_ticks
from kernel.cron import CronSchedule, ticks_between
from kernel.wire import keys
from tests.audit.helpers import head_seq, rows_after, verify
from tests.fixtures.database import all_rows
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member, create_tenant
from tests.fixtures.schedules import ScheduledJob, kill_replica, start_replica, stop_replica
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task


@pytest.fixture
def scheduler_settings(engine_settings: Settings) -> Settings:
    return engine_settings.model_copy(
        update={"scheduler_lease_seconds": 1.5, "scheduler_poll_seconds": 0.1}
    )


async def both_live(first: Scheduler, second: Scheduler) -> None:
    """Wait until two replicas have registered and each has seen the other."""
    await eventually(
        lambda: {first.name, second.name} <= set(first.live) & set(second.live),
        what=f"{first.name} and {second.name} seeing each other",
    )


async def ticks(client: AsyncClient, owner: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/jobs/{job_id}/schedule/ticks?limit=500", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def scheduled_runs(owner_engine: AsyncEngine, job_id: str) -> list[Any]:
    """The runs the schedule fired: a fire prepared ahead is not one until a pass has
    recorded it (its tick still ``planned``)."""
    return await all_rows(
        owner_engine,
        "SELECT r.id, r.scheduled_for, r.run_at, r.status FROM runs r "
        "WHERE r.job_id = :job AND r.trigger = 'schedule' AND NOT EXISTS ("
        "  SELECT 1 FROM schedule_ticks k WHERE k.tenant_id = r.tenant_id"
        "   AND k.job_id = r.job_id AND k.run_id = r.id AND k.outcome = 'planned') "
        "ORDER BY r.scheduled_for",
        job=job_id,
    )


async def test_a_schedule_fires_once_per_instant_with_both_times_recorded(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    owner_engine: AsyncEngine,
    running_worker: object,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner)
    scheduler, task = await start_replica(app, scheduler_settings, "sched-one")
    try:
        await eventually(
            lambda: scheduled_runs(owner_engine, job["id"]),
            lambda runs: len(runs) >= 2,
            what="two fires",
        )
    finally:
        await stop_replica(scheduler, task)
    runs = await scheduled_runs(owner_engine, job["id"])
    for run in runs:
        assert run.scheduled_for.microsecond == 0  # the instant the cron named
        assert run.run_at >= run.scheduled_for  # the actual start, recorded beside it
    ledger = await ticks(client, owner, job["id"])
    fired = [t for t in ledger if t["outcome"] == "fired"]
    assert {t["run_id"] for t in fired} == {str(r.id) for r in runs}


async def test_two_schedulers_make_exactly_one_run_per_instant(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner)
    first = await start_replica(app, scheduler_settings, "sched-a")
    second = await start_replica(app, scheduler_settings, "sched-b")
    try:
        await both_live(first[0], second[0])  # both were running while the instants passed
        await eventually(
            lambda: scheduled_runs(owner_engine, job["id"]),
            lambda runs: len({run.scheduled_for for run in runs}) >= 3,
            what="three instants fired",
        )
    finally:
        await stop_replica(*first)
        await stop_replica(*second)
    runs = await scheduled_runs(owner_engine, job["id"])
    per_instant = Counter(run.scheduled_for for run in runs)
    assert set(per_instant.values()) == {1}
    ledger = await ticks(client, owner, job["id"])
    assert len(ledger) == len({t["scheduled_for"] for t in ledger})


async def test_a_dead_replicas_tenants_move_to_a_live_replica(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner)
    doomed, doomed_task = await start_replica(app, scheduler_settings, "sched-doomed")
    try:
        await eventually(lambda: doomed.fired, lambda fired: fired >= 1, what="a fire")
        # between passes: a SIGKILL ends its transactions, a mid-statement cancel would not
        await eventually(lambda: not doomed.passing, what="the replica between passes")
    finally:
        await kill_replica(doomed, doomed_task, owner_engine)
    killed_at = datetime.now(UTC)
    heir, heir_task = await start_replica(app, scheduler_settings, "sched-heir")
    try:  # the dead replica's lease lapses; then the heir fires the instants that follow
        await eventually(
            lambda: scheduled_runs(owner_engine, job["id"]),
            lambda runs: any(r.scheduled_for > killed_at for r in runs),
            what="a fire after the replica died",
        )
    finally:
        await stop_replica(heir, heir_task)
    runs = await scheduled_runs(owner_engine, job["id"])
    assert len(runs) == len({r.scheduled_for for r in runs})
    assert heir.fired >= 1


async def test_three_replicas_one_killed_no_fire_lost_or_duplicated(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    """A replica SIGKILLed among three: the survivors learn of it from its missed
    heartbeats and take its tenants when their leases lapse - asking for each lease about
    once (they sleep until it lapses, they do not poll) - and every instant of every
    schedule fires exactly once, the ones due during the takeover late but not lost."""
    accounts = [owner, *[await create_tenant(client) for _ in range(5)]]
    jobs = {account.tenant_id: await scheduled_job(account) for account in accounts}
    replicas = [await start_replica(app, scheduler_settings, f"sched-three-{i}") for i in range(3)]
    names = {scheduler.name for scheduler, _ in replicas}
    try:
        await eventually(
            lambda: all(names <= set(scheduler.live) for scheduler, _ in replicas),
            what="three replicas seeing each other",
        )
        ours = {str(tenant) for tenant in jobs}  # other tests' tenants may be leased too

        def leased() -> set[str]:
            return {t for scheduler, _ in replicas for t in scheduler.leases} & ours

        await eventually(leased, lambda held: held == ours, what="every tenant leased")
        victim, victim_task = max(replicas, key=lambda pair: len(set(pair[0].leases) & ours))
        orphans = {uuid.UUID(tenant) for tenant in set(victim.leases) & ours}
        held = len(victim.leases)  # ours and any other test's tenant still due
        survivors = [pair for pair in replicas if pair[0] is not victim]
        for scheduler, _ in survivors:
            scheduler.lease_refused = 0
        # Killed between two passes: a real SIGKILL also ends its transactions (PostgreSQL
        # closes them); a task cancelled mid-statement would leave them open in this process.
        await eventually(lambda: not victim.passing, what="the victim between passes")
        await kill_replica(victim, victim_task, owner_engine)
        killed_at = datetime.now(UTC)
        for tenant in orphans:
            await eventually(
                lambda tenant=tenant: scheduled_runs(owner_engine, jobs[tenant]["id"]),
                lambda runs: sum(r.scheduled_for > killed_at for r in runs) >= 3,
                what="fires after the replica died",
            )
    finally:
        for scheduler, task in replicas:
            if scheduler is not victim or not task.done():
                await stop_replica(scheduler, task)
    assert orphans
    assert all(victim.name not in scheduler.live for scheduler, _ in survivors)
    # each survivor asked for an orphaned lease about once before it lapsed, not every pass
    refused = sum(scheduler.lease_refused for scheduler, _ in survivors)
    assert refused <= 2 * held, (refused, held)
    for account in accounts:
        runs = await scheduled_runs(owner_engine, jobs[account.tenant_id]["id"])
        ledger = await ticks(client, account, jobs[account.tenant_id]["id"])
        instants = sorted(datetime.fromisoformat(t["scheduled_for"]) for t in ledger)
        assert len(runs) == len({r.scheduled_for for r in runs})  # none duplicated
        # none missed nor skipped; the one after the last fire may be prepared already
        fired = [t for t in ledger if t["outcome"] == "fired"]
        planned = [t for t in ledger if t["outcome"] == "planned"]
        assert len(fired) + len(planned) == len(ledger)
        assert all(p["scheduled_for"] > f["scheduled_for"] for p in planned for f in fired)
        # every second from the first instant to the last has its tick: none lost
        assert len(instants) == int((instants[-1] - instants[0]).total_seconds()) + 1
        assert {t["run_id"] for t in fired} == {str(r.id) for r in runs}


async def test_a_stale_leaseholder_cannot_fire(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner)
    await _backdate(owner_engine, job["id"], seconds=3)
    sessionmaker = app.state.sessionmaker
    async with sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        await fire_due(session, app.state.redis, owner.tenant_id, fence=7)  # newer holder
        await commit(session)
    await _backdate(owner_engine, job["id"], seconds=3)
    async with sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        with pytest.raises(StaleLease):
            await fire_due(session, app.state.redis, owner.tenant_id, fence=6)  # the old one
        await session.rollback()


async def _backdate(owner_engine: AsyncEngine, job_id: str, *, seconds: float) -> None:
    """Pretend the scheduler last looked ``seconds`` ago (it was down since)."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - make_interval(secs => :s), "
                "next_due_at = now() - make_interval(secs => :s) WHERE job_id = :job"
            ),
            {"s": seconds, "job": job_id},
        )


async def _fire_once(app: FastAPI, owner: Account) -> None:
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        await fire_due(session, app.state.redis, owner.tenant_id, fence=1)
        await commit(session)


@pytest.mark.parametrize(
    ("policy", "fired", "dropped"),
    [("skip", 0, "missed"), ("fire_once", 1, "missed"), ("fire_all", 3, "missed")],
)
async def test_misfire_policies(
    policy: str,
    fired: int,
    dropped: str,
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, misfire=policy, max_catchup=3)
    await _backdate(owner_engine, job["id"], seconds=120)  # down for two minutes
    await _fire_once(app, owner)
    ledger = await ticks(client, owner, job["id"])
    outcomes = Counter(t["outcome"] for t in ledger)
    late = [t for t in ledger if "no scheduler was running" in (t["reason"] or "")]
    assert len(late) >= 60
    assert sum(1 for t in late if t["outcome"] == "fired") == fired
    assert outcomes[dropped] >= 60 - fired
    if fired:
        newest = max(late, key=lambda t: t["scheduled_for"])
        assert newest["outcome"] == "fired" and f"misfire: {policy}" in newest["reason"]


async def test_forbid_skips_instants_while_the_previous_run_is_active(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    running_worker: object,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, seconds=30, concurrency_policy="forbid")
    scheduler, task = await start_replica(app, scheduler_settings, "sched-forbid")
    try:  # instants came while the first run was still going
        await eventually(
            lambda: ticks(client, owner, job["id"]),
            lambda ledger: sum(t["outcome"] == "skipped" for t in ledger) >= 2,
            what="two skipped instants",
        )
    finally:
        await stop_replica(scheduler, task)
    ledger = await ticks(client, owner, job["id"])
    assert Counter(t["outcome"] for t in ledger)["fired"] == 1
    skipped = [t for t in ledger if t["outcome"] == "skipped"]
    assert skipped and all("forbids concurrent runs" in t["reason"] for t in skipped)
    runs = await client.get(f"/api/v1/runs?job_id={job['id']}", headers=owner.headers)
    for run in runs.json()["items"]:
        await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_pause_and_resume(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, misfire="skip")
    paused = await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    await _backdate(owner_engine, job["id"], seconds=5)
    await _fire_once(app, owner)  # paused: nothing is due
    assert await ticks(client, owner, job["id"]) == []
    resumed = await client.post(f"/api/v1/jobs/{job['id']}/resume", headers=owner.headers)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False

    async def fire_and_read() -> list[dict[str, Any]]:  # until the first instant after resume
        await _fire_once(app, owner)
        return await ticks(client, owner, job["id"])

    ledger = await eventually(fire_and_read, bool, what="a tick after resuming")
    assert any(t["outcome"] == "fired" and t["run_id"] for t in ledger), ledger
    audit = await client.get("/api/v1/audit?action=schedule", headers=owner.headers)
    actions = {e["action"] for e in audit.json()["items"]}
    assert {"schedule.paused", "schedule.resumed"} <= actions  # and the fires after resuming
    assert actions <= {"schedule.paused", "schedule.resumed", "schedule.fired"}


async def test_next_fire_preview_applies_the_dst_policy(
    client: AsyncClient,
    owner: Account,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron="30 2 * * *", timezone="Europe/Berlin")
    url = f"/api/v1/jobs/{job['id']}/schedule/next?count=3&after=2026-03-28T00:00:00Z"
    preview = (await client.get(url, headers=owner.headers)).json()
    utc = [item["utc"] for item in preview["items"]]
    assert utc == ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    assert "dst_gap" in preview["items"][1]["note"]
    assert preview["items"][1]["local"].startswith("2026-03-29T03:00:00+02:00")
    naive = await client.get(
        f"/api/v1/jobs/{job['id']}/schedule/next?after=2026-03-28T00:00:00", headers=owner.headers
    )
    assert_error(naive, 422, "validation_failed")


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron": "61 * * * *"},
        {"cron": "* * *"},
        {"cron": "@fortnightly"},
        {"cron": "0 3 * * *", "timezone": "Mars/Olympus"},
        {"cron": "0 3 * * *", "dst_gap": "sometimes"},
        {"cron": "0 3 * * *", "misfire": "never"},
        {"cron": "0 3 * * *", "start_at": "2026-01-01T00:00:00"},
        {"cron": "0 3 * * *", "start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
    ],
)
async def test_invalid_schedules_are_422(
    schedule: dict[str, Any], client: AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/api/v1/jobs",
        json={
            "name": f"bad-{uuid.uuid4().hex[:6]}",
            "schedule": schedule,
            "tasks": [python_task("noop")],
        },
        headers=owner.headers,
    )
    assert_error(response, 422, "validation_failed")
    assert response.json()["error"]["details"][0]["loc"][0] == "schedule"


async def test_schedule_endpoints_guard_roles_and_tenants(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner, cron="0 3 * * *")
    viewer = await create_member(client, owner, "viewer")
    base = f"/api/v1/jobs/{job['id']}"
    assert_error(await client.post(base + "/pause", headers=viewer.headers), 403, "forbidden")
    assert (await client.get(base + "/schedule/ticks", headers=viewer.headers)).status_code == 200
    for method, url in (
        ("POST", base + "/pause"),
        ("POST", base + "/resume"),
        ("GET", base + "/schedule/ticks"),
        ("GET", base + "/schedule/next"),
    ):
        response = await client.request(method, url, headers=stranger.headers)
        assert_error(response, 404, "not_found")
    plain = await create_job(client, owner, [python_task("noop")])
    response = await client.get(f"/api/v1/jobs/{plain['id']}/schedule/next", headers=owner.headers)
    assert_error(response, 404, "not_found")
    assert_error(await client.post(base + "/pause"), 401, "unauthenticated")


async def test_the_due_index_is_rebuilt_when_redis_lost_it(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    scheduler_settings: Settings,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(owner)
    await app.state.redis.zrem(keys.scheduler_due(), str(owner.tenant_id))
    scheduler = Scheduler(scheduler_settings, app.state.sessionmaker, app.state.redis)
    await scheduler.rebuild_due_index()
    assert await app.state.redis.zscore(keys.scheduler_due(), str(owner.tenant_id)) is not None
    assert job["id"]


async def test_replicas_split_the_tenants_between_them(
    app: FastAPI, scheduler_settings: Settings, client: AsyncClient
) -> None:
    tenants = [await create_tenant(client) for _ in range(6)]
    left, left_task = await start_replica(app, scheduler_settings, "replica-left")
    right, right_task = await start_replica(app, scheduler_settings, "replica-right")
    try:
        await both_live(left, right)
        for account in tenants:
            owners = [left.owns(account.tenant_id), right.owns(account.tenant_id)]
            assert owners.count(True) == 1, owners
    finally:
        await stop_replica(left, left_task)
        await stop_replica(right, right_task)
    alone, alone_task = await start_replica(app, scheduler_settings, "replica-alone")
    try:  # the others are gone: once their registrations lapse, one replica serves everyone
        await eventually(
            lambda: [alone.owns(account.tenant_id) for account in tenants],
            all,
            what="one replica owning every tenant",
        )
    finally:
        await stop_replica(alone, alone_task)


def test_a_pass_claims_leases_within_the_redis_clients_pool() -> None:
    """A pass claims its due tenants' leases a few at a time, within a quarter of the
    client's pool: one call each at once (500 tenants due in schedules10k) asked redis-py
    for more connections than its pool holds, and every pass failed, firing nothing."""
    assert _claim_concurrency(Redis(max_connections=3)) == 1
    assert _claim_concurrency(Redis(max_connections=100)) == 25
    assert _claim_concurrency(Redis(max_connections=10_000)) == 32


def test_a_late_instant_says_whether_the_scheduler_was_down_or_behind() -> None:
    """Missed while no scheduler ran, or while one ran but was behind: different reasons."""
    cron = CronSchedule(cron="* * * * *")
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    up_since = datetime(2026, 3, 1, 11, 57, 30, tzinfo=UTC)
    ticks = ticks_between(cron, now - timedelta(minutes=5), now)
    decisions = decide_ticks(
        ticks, {"misfire": "skip"}, now=now, paused_since=None, up_since=up_since
    )
    reasons = {d.key.minute: d.reason or "" for d in decisions}
    assert "no scheduler was running" in reasons[56] and "no scheduler" in reasons[57]
    assert "running behind" in reasons[58] and "running behind" in reasons[59]
    assert all(d.outcome == "missed" for d in decisions if d.key.minute in (56, 57, 58, 59))


async def test_a_fire_is_audited_in_its_own_transaction(
    scheduled_job: ScheduledJob, owner: Account, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    job = await scheduled_job(owner, misfire="fire_once")
    await _backdate(owner_engine, job["id"], seconds=5)
    before = await head_seq(owner_engine, owner.tenant_id)
    await _fire_once(app, owner)
    runs = await scheduled_runs(owner_engine, job["id"])
    assert runs

    async def fired_events() -> list[dict[str, Any]]:
        # written with the runs, chained into the log by the sealer after the commit
        return [
            row
            for row in await rows_after(owner_engine, owner.tenant_id, before)
            if row["action"] == "schedule.fired"
        ]

    fired = await eventually(
        fired_events, lambda rows: len(rows) >= len(runs), what="the fires' audit events"
    )
    assert sorted(row["target_id"] for row in fired) == sorted(str(run.id) for run in runs)
    for row in fired:
        assert (row["actor_type"], row["actor_label"]) == ("system", "scheduler")
        assert row["details"]["job_id"] == job["id"] and row["outcome"] == "success"
    assert (await verify(app, owner.tenant_id)).intact


async def test_a_fire_that_rolls_back_leaves_no_audit_event(
    scheduled_job: ScheduledJob, owner: Account, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    """The event and the run are one statement: no event for a fire that did not happen."""
    job = await scheduled_job(owner)
    await _backdate(owner_engine, job["id"], seconds=3)
    before = await head_seq(owner_engine, owner.tenant_id)
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        report, _ = await fire_due(session, app.state.redis, owner.tenant_id, fence=1)
        assert report.fired >= 1
        await session.rollback()
    assert await scheduled_runs(owner_engine, job["id"]) == []
    assert await rows_after(owner_engine, owner.tenant_id, before) == []

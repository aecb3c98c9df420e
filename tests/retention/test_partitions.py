"""Log lines and schedule ticks live in weekly partitions: created ahead of time, rows
that landed in the default partition moved into their week, whole weeks dropped, row-level
security on every partition, and the migration moves existing rows (both ways)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from alembic import command
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.app import create_app
from backend.core.db import scope_to_tenant
from backend.core.schema import alembic_config, provision_runtime_role
from backend.core.settings import Settings
from backend.retention import partitions
from tests.fixtures.factories import Account, create_tenant
from tests.fixtures.services import Services, claim_redis_db
from tests.fixtures.stack import flush_redis_db, fresh_database, settings_for
from tests.runs.factories import create_job, python_task, trigger

_WEEKS = text(
    """SELECT c.relname, c.relforcerowsecurity,
              EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class parent ON parent.oid = i.inhparent
        WHERE parent.relname = :table"""
)


async def _weeks(owner_engine: AsyncEngine, table: str) -> dict[str, tuple[bool, bool]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(_WEEKS, {"table": table})
        return {row.relname: (row.relforcerowsecurity, row.has_policy) for row in rows}


def _monday(instant: datetime) -> datetime:
    day = instant.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), datetime.min.time(), UTC)


async def test_partitions_appear_ahead_of_time_with_row_level_security(
    app: FastAPI, settings: Settings, owner_engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    await partitions.maintain(app.state.sessionmaker, settings, now=now)
    for table in partitions.TABLES:
        weeks = await _weeks(owner_engine, table)
        monday = _monday(now)
        for ahead in range(5):  # this week and four more
            name = f"{table}_p{(monday + timedelta(weeks=ahead)):%Y%m%d}"
            assert weeks.get(name) == (True, True), (name, sorted(weeks))
        assert weeks[f"{table}_default"] == (True, True)
    # Again: nothing more to create; the on-prem default keeps history forever, so no
    # week is dropped.
    again = await partitions.maintain(app.state.sessionmaker, settings, now=now)
    assert (again.created, again.dropped, again.kept_after) == (0, 0, None)


async def test_a_week_created_late_takes_its_rows_from_the_default_and_drops_whole(
    app: FastAPI, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    other = await create_tenant(client)
    job = (await create_job(client, account, [python_task("a")]))["id"]
    ancient = [datetime(2020, 1, 8, 12, tzinfo=UTC), datetime(2020, 1, 15, 12, tzinfo=UTC)]
    async with owner_engine.begin() as conn:
        for at in ancient:
            await conn.execute(
                text(
                    "INSERT INTO schedule_ticks (tenant_id, job_id, scheduled_for, wall_time,"
                    " outcome) VALUES (:t, :job, :at, 'x', 'missed')"
                ),
                {"t": account.tenant_id, "job": job, "at": at},
            )

    async def homes() -> list[str]:
        async with owner_engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT tableoid::regclass::text FROM schedule_ticks"
                    " WHERE tenant_id = :t ORDER BY scheduled_for"
                ),
                {"t": account.tenant_id},
            )
            return [row[0] for row in rows]

    assert await homes() == ["schedule_ticks_default"] * 2  # no week of 2020 existed
    async with app.state.sessionmaker() as session:  # the runtime role, as the engine
        created = await session.execute(
            text("SELECT history_ensure_partitions('schedule_ticks', :start, :end)"),
            {"start": datetime(2020, 1, 6, tzinfo=UTC), "end": datetime(2020, 1, 20, tzinfo=UTC)},
        )
        assert created.scalar_one() == 2
        await session.commit()
    assert await homes() == ["schedule_ticks_p20200106", "schedule_ticks_p20200113"]
    weeks = await _weeks(owner_engine, "schedule_ticks")
    assert weeks["schedule_ticks_p20200106"] == (True, True)

    # Row-level security on the moved rows: the tenant sees them, another tenant not.
    for tenant, expected in ((account, 2), (other, 0)):
        async with app.state.sessionmaker() as session:
            await scope_to_tenant(session, tenant.tenant_id)
            seen = await session.execute(
                text("SELECT count(*) FROM schedule_ticks WHERE scheduled_for < '2021-01-01'")
            )
            assert seen.scalar_one() == expected
            await session.rollback()

    # A week is dropped whole once it ends before the cut; the next one is kept.
    async with app.state.sessionmaker() as session:
        dropped = await session.execute(
            text("SELECT history_drop_partitions('schedule_ticks', :before)"),
            {"before": datetime(2020, 1, 14, tzinfo=UTC)},
        )
        assert dropped.scalar_one() == 1
        await session.commit()
    assert await homes() == ["schedule_ticks_p20200113"]
    assert "schedule_ticks_p20200106" not in await _weeks(owner_engine, "schedule_ticks")


async def test_the_migration_moves_existing_rows_into_their_weeks(services: Services) -> None:
    with claim_redis_db(services.redis_url) as redis_url:
        await flush_redis_db(redis_url)
        async with fresh_database(services) as owner_url:
            settings = settings_for(owner_url, redis_url)
            app = create_app(settings)
            owner = create_async_engine(settings.owner_database_url())
            try:
                async with app.router.lifespan_context(app):
                    transport = ASGITransport(app=app, client=("203.0.113.8", 40000))
                    async with AsyncClient(transport=transport, base_url="http://b.test") as c:
                        account = await create_tenant(c)
                        await _history(c, owner, account)
                before = await _rows(owner)
                config = alembic_config(owner_url)
                await asyncio.to_thread(command.downgrade, config, "0015_retention")
                assert await _rows(owner) == before
                assert await _weeks(owner, "task_logs") == {}  # a plain table again
                await asyncio.to_thread(command.upgrade, config, "head")
                await provision_runtime_role(settings)
                assert await _rows(owner) == before
                homes = await _homes(owner)
                assert homes == {
                    ("task_logs", "task_logs_p20260105"),
                    ("task_logs", _week_of()),
                    ("schedule_ticks", "schedule_ticks_p20260105"),
                }
            finally:
                await owner.dispose()


def _week_of() -> str:
    return f"task_logs_p{_monday(datetime.now(UTC)):%Y%m%d}"


async def _history(client: AsyncClient, owner: AsyncEngine, account: Account) -> None:
    """A log line of today, one of 2026-01-07, a tick of 2026-01-07."""
    job = await create_job(client, account, [python_task("a")])
    run = await trigger(client, account, job["id"], delay_seconds=3600)
    async with owner.begin() as conn:
        task = (
            await conn.execute(
                text("SELECT id FROM task_runs WHERE run_id = :r"), {"r": uuid.UUID(run["id"])}
            )
        ).scalar_one()
        for seq, at in ((1, datetime(2026, 1, 7, tzinfo=UTC)), (2, datetime.now(UTC))):
            await conn.execute(
                text(
                    "INSERT INTO task_logs (tenant_id, task_run_id, attempt, seq, stream,"
                    " line, logged_at) VALUES (:t, :task, 1, :seq, 'stdout', 'x', :at)"
                ),
                {"t": account.tenant_id, "task": task, "seq": seq, "at": at},
            )
        await conn.execute(
            text(
                "INSERT INTO schedule_ticks (tenant_id, job_id, scheduled_for, wall_time,"
                " outcome) VALUES (:t, :job, :at, 'x', 'missed')"
            ),
            {"t": account.tenant_id, "job": job["id"], "at": datetime(2026, 1, 7, tzinfo=UTC)},
        )


async def _rows(owner: AsyncEngine) -> list[tuple[str, str]]:
    async with owner.connect() as conn:
        logs = await conn.execute(text("SELECT seq, logged_at FROM task_logs ORDER BY seq"))
        ticks = await conn.execute(text("SELECT job_id, scheduled_for FROM schedule_ticks"))
        return [(str(a), str(b)) for a, b in [*logs.all(), *ticks.all()]]


async def _homes(owner: AsyncEngine) -> set[tuple[str, str]]:
    async with owner.connect() as conn:
        logs = await conn.execute(text("SELECT tableoid::regclass::text FROM task_logs"))
        ticks = await conn.execute(text("SELECT tableoid::regclass::text FROM schedule_ticks"))
        return {("task_logs", r[0]) for r in logs} | {("schedule_ticks", r[0]) for r in ticks}

"""The tenant scope sent with BEGIN, and the pool's ping of idle connections (core/db.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core import db
from backend.core.db import (
    create_engine,
    create_sessionmaker,
    scope_to_tenant,
    scope_to_user,
)
from backend.core.settings import Settings
from kernel.dependencies import outage_of
from tests.fixtures.clock import FakeClock
from tests.fixtures.factories import create_tenant


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock core/db.py measures a pooled connection's idle time with."""
    clock = FakeClock()
    monkeypatch.setattr(db, "time", clock)
    return clock


@pytest.fixture
async def engine(settings: Settings, clock: FakeClock) -> AsyncIterator[AsyncEngine]:
    """The API's kind of engine: no pre-ping, a ping for connections idle over 0.2 s."""
    engine = create_engine(
        settings.runtime_database_url(), pool_size=1, pre_ping=False, ping_idle_after=0.2
    )
    yield engine
    await engine.dispose()


async def _setting(session: AsyncSession, name: str) -> str | None:
    value = (await session.execute(text(f"SELECT current_setting('{name}', true)"))).scalar()
    return str(value) if value else None


async def test_the_scope_is_set_with_begin_and_lasts_one_transaction(
    engine: AsyncEngine,
) -> None:
    tenant = uuid.uuid4()
    async with create_sessionmaker(engine)() as session:
        await scope_to_tenant(session, tenant)
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        assert raw.driver_connection._with_begin is None  # type: ignore[union-attr]
        assert await _setting(session, "app.tenant_id") == str(tenant)
        await session.commit()
        # The next transaction on the same (only) connection starts unscoped.
        assert await _setting(session, "app.tenant_id") is None
        await session.rollback()


async def test_a_transaction_already_begun_is_scoped_by_a_statement(
    engine: AsyncEngine,
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with create_sessionmaker(engine)() as session:
        await session.execute(text("SELECT 1"))  # BEGIN has been sent
        await scope_to_tenant(session, first)
        assert await _setting(session, "app.tenant_id") == str(first)
        await scope_to_tenant(session, second)  # a second scope replaces the first
        assert await _setting(session, "app.tenant_id") == str(second)
        await session.rollback()


async def test_the_user_scope_is_set_with_begin_too(engine: AsyncEngine) -> None:
    user = uuid.uuid4()
    async with create_sessionmaker(engine)() as session:
        await scope_to_user(session, user)
        assert await _setting(session, "app.user_id") == str(user)
        await session.rollback()


async def test_the_scope_reaches_row_level_security(
    engine: AsyncEngine, client: AsyncClient
) -> None:
    """A tenant's memberships are visible in its scope only (as in tests/core/test_rls)."""
    account = await create_tenant(client)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        await scope_to_tenant(session, account.tenant_id)
        rows = (await session.execute(text("SELECT tenant_id FROM memberships"))).all()
        assert {row[0] for row in rows} == {account.tenant_id}
    async with sessionmaker() as session:
        await scope_to_tenant(session, uuid.uuid4())
        seen = (await session.execute(text("SELECT count(*) FROM memberships"))).scalar_one()
        assert seen == 0


async def test_an_idle_connection_that_died_is_replaced_before_use(
    engine: AsyncEngine, owner_engine: AsyncEngine, clock: FakeClock
) -> None:
    """A connection killed while it sat in the pool fails its ping and is replaced: the
    next session works (without the ping it would fail once)."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await session.commit()
    async with owner_engine.begin() as owner:
        await owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    clock.advance(0.3)  # idle longer than ping_idle_after
    async with sessionmaker() as session:
        await scope_to_tenant(session, uuid.uuid4())
        now_pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert now_pid != pid


async def test_a_busy_connection_is_not_pinged(engine: AsyncEngine, clock: FakeClock) -> None:
    """Back in use within ping_idle_after: no ping (no empty statement sent)."""
    pings: list[Any] = []
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        await session.commit()
        raw = await (await session.connection()).get_raw_connection()
        driver: Any = raw.driver_connection
        original = driver.fetchrow

        async def fetchrow(query: str, *args: Any, **kwargs: Any) -> Any:
            if query == ";":  # the adapter's ping
                pings.append(1)
            return await original(query, *args, **kwargs)

        driver.fetchrow = fetchrow
        await session.rollback()
    async with sessionmaker() as session:  # at once: not idle
        await session.execute(text("SELECT 1"))
        await session.rollback()
    assert pings == []
    clock.advance(0.3)
    async with sessionmaker() as session:  # idle past 0.2 s: pinged
        await session.execute(text("SELECT 1"))
        await session.rollback()
    assert pings == [1]


async def test_raw_statements_run_in_the_sessions_transaction(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    """``driver_connection`` begins the transaction on the server first: a raw statement
    sent before any of SQLAlchemy's is inside it, and rolled back with it."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        conn = await db.driver_connection(session)
        assert conn.is_in_transaction()
        xid = await conn.fetchval("SELECT txid_current()")
        same = (await session.execute(text("SELECT txid_current()"))).scalar_one()
        assert same == xid
        await session.rollback()
    async with sessionmaker() as session:
        conn = await db.driver_connection(session)
        assert await conn.fetchval("SELECT txid_current()") != xid


async def test_a_raw_statement_on_a_killed_connection_leaves_it_out_of_the_pool(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    """An outage met by a raw statement is no error SQLAlchemy saw, but the rollback that
    follows fails on the dead connection and SQLAlchemy drops it then: the pool hands out a
    live one next (with pool_size=1 and no ping, the dead one would fail the next
    transaction too)."""
    sessionmaker = create_sessionmaker(engine)
    with pytest.raises(Exception) as raised:  # which kind of outage error varies
        async with db.tenant_transaction(sessionmaker, uuid.uuid4()) as session:
            conn = await db.driver_connection(session)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            async with owner_engine.begin() as owner:
                await owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await conn.fetchval("SELECT 1")
    assert outage_of(raised.value) == "postgres"
    async with db.tenant_transaction(sessionmaker, uuid.uuid4()) as session:
        conn = await db.driver_connection(session)
        assert await conn.fetchval("SELECT pg_backend_pid()") != pid


async def test_a_transaction_may_ask_for_reused_plans_with_its_scope(engine: AsyncEngine) -> None:
    """``plan_cache`` travels with the tenant scope and lasts one transaction."""
    tenant = uuid.uuid4()
    async with create_sessionmaker(engine)() as session:
        default = await _setting(session, "plan_cache_mode")
        await session.rollback()
        await scope_to_tenant(session, tenant, plan_cache="auto")
        assert await _setting(session, "plan_cache_mode") == "auto"
        assert await _setting(session, "app.tenant_id") == str(tenant)
        await session.commit()
        assert await _setting(session, "plan_cache_mode") == default
        await session.rollback()


async def test_no_other_value_reaches_the_statement(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as session:
        with pytest.raises(ValueError, match="plan_cache_mode"):
            await scope_to_tenant(session, uuid.uuid4(), plan_cache="auto', true); --")  # type: ignore[arg-type]

"""Outage handling: which errors are outages, backoff, and a guarded loop's status."""

from __future__ import annotations

import uuid

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from kernel.dependencies import BACKOFF_CAP, Backoff, Dependencies, Guard, outage_of
from kernel.metrics import REGISTRY
from tests.fixtures.services import Services

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"


def _asyncpg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _redis_error() -> Exception:
    client = Redis.from_url(UNREACHABLE_REDIS)
    try:
        await client.ping()
    except Exception as error:  # noqa: BLE001  (the real error is what we classify)
        return error
    finally:
        await client.aclose()
    raise AssertionError("an unreachable Redis answered")


async def _postgres_error() -> Exception:
    engine = create_async_engine(UNREACHABLE_POSTGRES)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001
        return error
    finally:
        await engine.dispose()
    raise AssertionError("an unreachable PostgreSQL answered")


async def test_real_connection_failures_are_outages_of_the_right_dependency() -> None:
    assert outage_of(await _redis_error()) == "redis"
    assert outage_of(await _postgres_error()) == "postgres"
    assert outage_of(asyncpg.AdminShutdownError("terminating connection")) == "postgres"


async def test_a_database_refusing_connections_is_an_outage(services: Services) -> None:
    """SQLSTATE 55000 at connect time (``ALLOW_CONNECTIONS false``, a database being dropped
    or restored): once counted as an event's own failure, it dead-lettered the engine's
    events during such an outage."""
    name = f"baton_refusing_{uuid.uuid4().hex[:8]}"
    maintenance = create_async_engine(
        _asyncpg(services.database_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with maintenance.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}" ALLOW_CONNECTIONS false'))
    refusing = create_async_engine(
        make_url(_asyncpg(services.database_url)).set(database=name), poolclass=NullPool
    )
    try:
        async with refusing.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001  (the real error is what we classify)
        assert "not currently accepting connections" in str(error)
        assert outage_of(error) == "postgres"
    else:
        raise AssertionError("a database refusing connections answered")
    finally:
        await refusing.dispose()
        async with maintenance.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}"'))
        await maintenance.dispose()


def test_other_errors_are_not_outages() -> None:
    assert outage_of(ValueError("bad input")) is None
    assert outage_of(KeyError("x")) is None


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[0] <= 0.25
    assert max(delays) <= BACKOFF_CAP
    assert delays[-1] >= BACKOFF_CAP / 2  # equal jitter: at least half the nominal delay
    backoff.reset()
    assert backoff.next_delay() <= 0.25


async def test_a_guarded_loop_survives_an_outage_and_reports_it() -> None:
    status = Dependencies()
    guard = Guard("test.loop", status)
    guard.backoff = Backoff(first=0.01, cap=0.01)
    before = REGISTRY.get_sample_value("baton_dependency_outages_total", {"dependency": "redis"})

    async def failing() -> None:
        raise await _redis_error()

    async def working() -> None:
        return None

    assert await guard.run(failing()) is False
    assert await guard.run(failing()) is False  # one outage, however many failures
    assert status.is_down("redis")
    assert status.report()["redis"]["up"] is False
    assert REGISTRY.get_sample_value("baton_dependency_up", {"dependency": "redis"}) == 0
    after = REGISTRY.get_sample_value("baton_dependency_outages_total", {"dependency": "redis"})
    assert after == (before or 0) + 1
    assert await guard.run(working()) is True
    assert not status.is_down("redis")
    assert REGISTRY.get_sample_value("baton_dependency_up", {"dependency": "redis"}) == 1


async def test_a_guarded_loop_survives_a_bug_too() -> None:
    guard = Guard("test.buggy", Dependencies())
    guard.backoff = Backoff(first=0.01, cap=0.01)

    async def buggy() -> None:
        raise ZeroDivisionError

    assert await guard.run(buggy()) is False
    assert guard.seen_down == set()

"""Shared fixtures: real PostgreSQL and Redis, a migrated throw-away database, the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.core.settings import Settings
from tests.fixtures.services import Services, claim_redis_db, find_services
from tests.fixtures.stack import (
    client_for,
    flush_redis_db,
    fresh_database,
    settings_for,
    started_app,
)

pytest_plugins = [
    "tests.fixtures.cli",
    "tests.fixtures.docker_engine",
    "tests.fixtures.factories",
    "tests.fixtures.execution",
    "tests.fixtures.mail",
    "tests.fixtures.queues",
    "tests.fixtures.schedules",
    "tests.fixtures.server",
    "tests.fixtures.stripe",
]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with find_services() as found:
        yield found


@pytest.fixture(scope="session")
def redis_url(services: Services) -> Iterator[str]:
    """A Redis database no other running suite holds (see ``claim_redis_db``)."""
    with claim_redis_db(services.redis_url) as url:
        yield url


@pytest.fixture(scope="session")
async def settings(services: Services, redis_url: str) -> AsyncIterator[Settings]:
    """A fresh database for this run, migrated, with the runtime role provisioned, and an
    emptied Redis database of its own."""
    async with fresh_database(services) as owner_url:
        await flush_redis_db(redis_url)
        yield settings_for(owner_url, redis_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    async with started_app(settings) as application:
        yield application
    await remove_worker_acl_users(settings)


async def remove_worker_acl_users(settings: Settings) -> None:
    """Remove the Redis ACL users of the worker credentials this session's database holds:
    ACL users are server-wide, not per database, and would outlive the session."""
    engine = create_async_engine(settings.owner_database_url())
    try:
        async with engine.connect() as conn:
            names = list(
                (await conn.execute(text("SELECT redis_user FROM worker_credentials"))).scalars()
            )
    finally:
        await engine.dispose()
    assert settings.redis_url
    client = Redis.from_url(settings.redis_url)
    for name in names:
        await client.execute_command("ACL", "DELUSER", name)
    await client.aclose()


@pytest.fixture
async def client(app: object) -> AsyncIterator[AsyncClient]:
    async with client_for(app, "203.0.113.7") as http:
        yield http


@pytest.fixture(scope="session")
async def owner_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The owner/superuser connection: for tampering and for checking what the app cannot."""
    engine = create_async_engine(settings.owner_database_url())
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def runtime_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A raw connection as the runtime role, for row-level security checks."""
    engine = create_async_engine(settings.runtime_database_url())
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    assert settings.redis_url
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()

"""Shared fixtures: real PostgreSQL and Redis, a migrated throw-away database, the app."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.app import create_app
from backend.core.schema import provision_runtime_role, run_migrations
from backend.core.settings import Environment, Settings
from tests.fixtures.services import Services, find_services

pytest_plugins = [
    "tests.fixtures.factories",
    "tests.fixtures.execution",
    "tests.fixtures.server",
]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with find_services() as found:
        yield found


def _test_settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment.test,
        database_url=database_url,
        redis_url=redis_url,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        login_max_failures_per_account=5,
        login_max_failures_per_ip=1000,
    )


def private_redis_db(url: str, *, avoid: str | None = None) -> str:
    """Give this test session a Redis database of its own (1-12, at random), so two suites
    run side by side on one machine do not flush or read each other's keys; ``avoid`` is
    another URL whose database must not be chosen."""
    parsed = make_url(url.replace("redis://", "postgresql://", 1))
    taken = make_url(avoid.replace("redis://", "postgresql://", 1)).database if avoid else None
    choices = [str(db) for db in range(1, 13) if str(db) != taken]  # 13-15: `make bench`
    return (
        parsed.set(database=random.choice(choices))
        .render_as_string(hide_password=False)
        .replace("postgresql://", "redis://", 1)
    )


@asynccontextmanager
async def fresh_database(services: Services) -> AsyncIterator[str]:
    """A new, migrated database with the runtime role provisioned; its owner URL."""
    maintenance = make_url(
        Settings(_env_file=None, database_url=services.database_url).owner_database_url()
    )  # type: ignore[call-arg]
    name = f"baton_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(maintenance, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner_url = maintenance.set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(run_migrations, owner_url)
        await provision_runtime_role(_test_settings(owner_url, services.redis_url))
        yield owner_url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def settings(services: Services) -> AsyncIterator[Settings]:
    """A fresh database for this run, migrated, with the runtime role provisioned."""
    async with fresh_database(services) as owner_url:
        settings = _test_settings(owner_url, private_redis_db(services.redis_url))
        assert settings.redis_url is not None
        redis = Redis.from_url(settings.redis_url)
        await redis.flushdb()
        await redis.aclose()
        yield settings


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
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
    transport = ASGITransport(app=app, client=("203.0.113.7", 40000))  # type: ignore[arg-type]
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
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

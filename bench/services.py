"""PostgreSQL and Redis for a benchmark run.

``BATON_BENCH_DATABASE_URL`` (an owner/superuser URL of a maintenance database) and
``BATON_BENCH_REDIS_URL`` when set, else the embedded servers of ``backend.core.embedded``
(data in ``.baton-data/bench``), so ``make bench`` works from a fresh clone.

Each run gets a database ``bench_<random>`` and a runtime role of its own (dropped at the
end), so it neither reads nor changes any other database or the shared ``baton_app`` role.
Baton and Celery get dedicated Redis database numbers (never 0), flushed before use; Baton's
processes connect as Redis ACL users made for the run (:class:`RedisRoles`), removed at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.engine import make_url

from bench.common import ROOT

log = logging.getLogger("bench.services")

DEFAULT_BATON_REDIS_DB = 14
DEFAULT_CELERY_REDIS_DB = 15
DEFAULT_DRAMATIQ_REDIS_DB = 13


@dataclass(frozen=True)
class BenchDatabase:
    name: str
    owner_url: str  # SQLAlchemy URL (postgresql+asyncpg://...) of the owner role
    app_role: str
    app_password: str

    def asyncpg_dsn(self) -> str:
        return asyncpg_dsn(self.owner_url)


@dataclass(frozen=True)
class Services:
    maintenance_url: str  # SQLAlchemy URL of the owner on a maintenance database
    redis_url: str  # base URL; the database number is chosen per system
    source: str  # "environment" or "embedded"
    baton_redis_db: int
    celery_redis_db: int
    dramatiq_redis_db: int

    def redis_db_url(self, db: int) -> str:
        parts = urlsplit(self.redis_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))

    @property
    def baton_redis_url(self) -> str:
        return self.redis_db_url(self.baton_redis_db)

    @property
    def celery_redis_url(self) -> str:
        return self.redis_db_url(self.celery_redis_db)

    @property
    def dramatiq_redis_url(self) -> str:
        return self.redis_db_url(self.dramatiq_redis_db)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a plain DSN asyncpg accepts (``?host=`` sockets too)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _redis_db_numbers() -> tuple[int, int, int]:
    baton = int(os.environ.get("BATON_BENCH_REDIS_DB", DEFAULT_BATON_REDIS_DB))
    celery = int(os.environ.get("BATON_BENCH_CELERY_REDIS_DB", DEFAULT_CELERY_REDIS_DB))
    dramatiq = int(os.environ.get("BATON_BENCH_DRAMATIQ_REDIS_DB", DEFAULT_DRAMATIQ_REDIS_DB))
    if 0 in (baton, celery, dramatiq) or len({baton, celery, dramatiq}) < 3:
        raise ValueError("the benchmark needs three distinct Redis database numbers, none 0")
    return baton, celery, dramatiq


def services_from_env() -> Services:
    """The configured or embedded PostgreSQL and Redis (embedded ones stop at exit)."""
    database_url = os.environ.get("BATON_BENCH_DATABASE_URL")
    redis_url = os.environ.get("BATON_BENCH_REDIS_URL")
    baton_db, celery_db, dramatiq_db = _redis_db_numbers()
    source = "environment"
    if database_url is None or redis_url is None:
        from backend.core.embedded import start_postgres, start_redis

        data_dir = Path(os.environ.get("BATON_BENCH_DATA_DIR", str(ROOT / ".baton-data" / "bench")))
        source = "embedded" if database_url is None and redis_url is None else "mixed"
        if database_url is None:
            database_url = start_postgres(data_dir).url
            log.info("embedded PostgreSQL running (data in %s)", data_dir / "postgres")
        if redis_url is None:
            redis_url = start_redis(data_dir, persistent=False).url
            log.info("embedded Redis running at %s", redis_url)
    return Services(
        maintenance_url=_sqlalchemy_url(database_url),
        redis_url=redis_url,
        source=source,
        baton_redis_db=baton_db,
        celery_redis_db=celery_db,
        dramatiq_redis_db=dramatiq_db,
    )


@contextlib.asynccontextmanager
async def bench_database(services: Services) -> AsyncIterator[BenchDatabase]:
    """CREATE DATABASE bench_<random> (+ a runtime role); drop both on the way out."""
    suffix = secrets.token_hex(5)
    name = f"bench_{suffix}"
    role = f"baton_bench_{suffix}"
    admin = await asyncpg.connect(asyncpg_dsn(services.maintenance_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        log.info("created database %s", name)
        owner_url = make_url(services.maintenance_url).set(database=name)
        try:
            yield BenchDatabase(
                name=name,
                owner_url=owner_url.render_as_string(hide_password=False),
                app_role=role,
                app_password=secrets.token_hex(16),
            )
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if exists:
                await admin.execute(f'DROP ROLE "{role}"')
            log.info("dropped database %s and role %s", name, role)
    finally:
        await admin.close()


@dataclass(frozen=True)
class RedisRoles:
    """The engine's and the shared workers' Redis ACL users for one benchmark run.

    Production refuses an unauthenticated Redis, so Baton's processes connect as the users
    ``baton redis provision-acl`` makes. ACL users are server-wide: the names carry a random
    suffix (two runs, or a deployment, on one Redis keep theirs) and the run removes them.
    """

    engine_user: str
    engine_password: str
    worker_user: str
    worker_password: str

    @classmethod
    def generate(cls) -> RedisRoles:
        suffix = secrets.token_hex(4)
        return cls(
            engine_user=f"baton-bench-engine-{suffix}",
            engine_password=secrets.token_urlsafe(24),
            worker_user=f"baton-bench-worker-{suffix}",
            worker_password=secrets.token_urlsafe(24),
        )

    @property
    def users(self) -> list[str]:
        return [self.engine_user, self.worker_user]

    def provision_env(self, admin_url: str) -> dict[str, str]:
        """What ``baton redis provision-acl`` reads to make these users."""
        return {
            "BATON_REDIS_ADMIN_URL": admin_url,
            "BATON_REDIS_ENGINE_USER": self.engine_user,
            "BATON_REDIS_ENGINE_PASSWORD": self.engine_password,
            "BATON_REDIS_WORKER_USER": self.worker_user,
            "BATON_REDIS_WORKER_PASSWORD": self.worker_password,
        }


def redis_url_as(url: str, user: str, password: str) -> str:
    """``url`` connecting as ``user`` (any user and password it named are replaced)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def drop_redis_users(admin_url: str, users: list[str]) -> None:
    """ACL DELUSER the benchmark's users (no error if they were never made)."""
    client = Redis.from_url(admin_url)
    try:
        await client.execute_command("ACL", "DELUSER", *users)
        try:
            await client.execute_command("ACL", "SAVE")
        except ResponseError as error:  # no aclfile: the users lived in memory only
            if "acl file" not in str(error).lower():
                raise
        log.info("removed Redis users %s", ", ".join(users))
    finally:
        await client.aclose()


SENTINEL = "bench:sentinel"
FLUSHED = (
    "another process flushed the benchmark's Redis database {url} during the run "
    "(a test suite picking the same DB number?): results discarded. Point "
    "BATON_BENCH_REDIS_URL at a private Redis, or leave it unset for the embedded one"
)


async def flush_redis(url: str) -> None:
    """FLUSHDB the benchmark's own Redis database (refuses database 0), then set a sentinel
    key: if it is gone later, something else flushed the database mid-run."""
    if urlsplit(url).path.strip("/") in ("", "0"):
        raise ValueError(f"refusing to flush Redis database 0 ({url})")
    client = Redis.from_url(url)
    try:
        await client.flushdb()
        await client.set(SENTINEL, "1")
    finally:
        await client.aclose()


async def redis_intact(url: str) -> bool:
    """False if the benchmark's Redis database was flushed by someone else (see above)."""
    client = Redis.from_url(url)
    try:
        return bool(await client.exists(SENTINEL))
    finally:
        await client.aclose()


async def redis_pid(url: str) -> int | None:
    """PID of the Redis server behind ``url`` when it runs on this machine, else None."""
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    client = Redis.from_url(url)
    try:
        return int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()


async def server_versions(services: Services) -> dict[str, str]:
    """PostgreSQL and Redis server versions."""
    versions: dict[str, str] = {}
    conn = await asyncpg.connect(asyncpg_dsn(services.maintenance_url))
    try:
        versions["postgresql"] = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    client = Redis.from_url(services.redis_url)
    try:
        info = await client.info("server")
        versions["redis"] = str(info.get("redis_version", "?"))
    finally:
        await client.aclose()
    return versions

"""Each process refuses, in production, only what it would itself run with unsafely.

The API needs the JWT secret, the database password, the key-encryption key and the transit
key (worker credentials carry keys derived from it), the engine the database password and
both secret keys, a shared-pool worker only the transit key and a tenant-hosted worker only
its credential; every one of them refuses a Redis URL without a
user and password (Redis ACL users are how roles are enforced).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.cli import app as cli
from backend.core.settings import Environment, Process, Settings, UnsafeSettings

AUTHENTICATED = "redis://baton-engine:a-long-redis-password@redis.internal:6379/0"


def production(**values: object) -> Settings:
    return Settings(_env_file=None, environment=Environment.production, **values)  # type: ignore[arg-type]


def test_production_refuses_an_unauthenticated_redis_for_every_process() -> None:
    settings = production(
        redis_url="redis://redis.internal:6379/0",
        jwt_secret="p" * 48,
        app_db_password="a-real-database-password",
    )
    for process in (Process.api, Process.engine, Process.worker):
        with pytest.raises(UnsafeSettings, match="BATON_REDIS_URL must name a Redis user"):
            settings.refuse_unsafe_for(process)
    settings.refuse_unsafe_for(Process.database)  # migrations never touch Redis


def test_a_worker_needs_no_jwt_secret_and_no_database_password() -> None:
    """A shared-pool worker needs only the transit key; a tenant-hosted one its credential."""
    hosted = production(redis_url=AUTHENTICATED, worker_credential="bwc_x")
    hosted.refuse_unsafe_for(Process.worker)
    with pytest.raises(UnsafeSettings, match="BATON_WORKER_TRANSIT_KEY"):
        production(redis_url=AUTHENTICATED).refuse_unsafe_for(Process.worker)
    transit = base64.b64encode(os.urandom(32)).decode()
    settings = production(redis_url=AUTHENTICATED, worker_transit_key=transit)
    settings.refuse_unsafe_for(Process.worker)
    with pytest.raises(UnsafeSettings, match="BATON_JWT_SECRET") as refused:
        settings.refuse_unsafe_for(Process.api)
    assert "BATON_APP_DB_PASSWORD" in str(refused.value)
    with pytest.raises(UnsafeSettings, match="BATON_APP_DB_PASSWORD"):
        settings.refuse_unsafe_for(Process.engine)


def test_the_api_needs_the_transit_key_to_issue_worker_credentials() -> None:
    """Without it the API would start, then fail POST /api/v1/workers/credentials."""
    complete = {
        "redis_url": AUTHENTICATED,
        "jwt_secret": "p" * 48,
        "app_db_password": "a-real-database-password",
        "secrets_kek": base64.b64encode(os.urandom(32)).decode(),
    }
    with pytest.raises(UnsafeSettings, match="BATON_WORKER_TRANSIT_KEY must be set") as refused:
        production(**complete).refuse_unsafe_for(Process.api)
    assert "BATON_JWT_SECRET" not in str(refused.value)
    transit = base64.b64encode(os.urandom(32)).decode()
    production(**complete, worker_transit_key=transit).refuse_unsafe_for(Process.api)


def test_outside_production_nothing_is_refused() -> None:
    for environment in (Environment.dev, Environment.test):
        settings = Settings(_env_file=None, environment=environment, redis_url="redis://h/0")  # type: ignore[call-arg]
        settings.refuse_unsafe_for(*Process)


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Production with nothing but what each test sets (no .env, no BATON_* inherited)."""
    import os

    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATON_ENVIRONMENT", "production")
    yield


def test_baton_api_refuses_the_default_secrets(
    production_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_REDIS_URL", AUTHENTICATED)
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql://baton@db.internal/baton")
    result = CliRunner().invoke(cli, ["api"])
    assert result.exit_code == 2
    assert "BATON_JWT_SECRET must be set" in result.output
    assert "BATON_APP_DB_PASSWORD must be set" in result.output
    assert "BATON_WORKER_TRANSIT_KEY must be set" in result.output


def test_baton_worker_refuses_an_unauthenticated_redis(
    production_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_REDIS_URL", "redis://redis.internal:6379/0")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2
    assert "BATON_REDIS_URL must name a Redis user and password" in result.output
    assert "JWT" not in result.output

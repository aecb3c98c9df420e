"""`baton redis provision-acl` makes the role users; `baton worker --credential` checks its
credential before anything else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from backend.cli import app as cli
from backend.core.settings import Settings
from kernel.credential import WorkerCredential

runner = CliRunner()


@pytest.fixture
def role_names(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    assert settings.redis_url
    names = (f"test-engine-{uuid.uuid4().hex[:8]}", f"test-worker-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("BATON_ENVIRONMENT", "test")
    monkeypatch.setenv("BATON_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("BATON_REDIS_ENGINE_USER", names[0])
    monkeypatch.setenv("BATON_REDIS_WORKER_USER", names[1])
    yield names


async def test_provision_acl_sets_the_engine_and_shared_worker_users(
    role_names: tuple[str, str], monkeypatch: pytest.MonkeyPatch, redis: Redis, settings: Settings
) -> None:
    assert settings.redis_url
    monkeypatch.setenv("BATON_REDIS_ENGINE_PASSWORD", "engine-password-of-the-test")
    monkeypatch.setenv("BATON_REDIS_WORKER_PASSWORD", "worker-password-of-the-test")
    try:
        result = await asyncio.to_thread(runner.invoke, cli, ["redis", "provision-acl"])
        assert result.exit_code == 0, result.output
        for name in role_names:
            assert f"Redis user {name} is up to date." in result.output
        shared = WorkerCredential("0" * 32, "q", role_names[1], "worker-password-of-the-test")
        client = Redis.from_url(shared.connection_url(settings.redis_url))
        assert await client.ping()
        await client.aclose()
        # Run again with a new password: the user is updated, the old password refused.
        monkeypatch.setenv("BATON_REDIS_WORKER_PASSWORD", "a-rotated-worker-password")
        again = await asyncio.to_thread(runner.invoke, cli, ["redis", "provision-acl"])
        assert again.exit_code == 0, again.output
        rules = await redis.execute_command("ACL", "GETUSER", role_names[1])
        assert len(rules["passwords"]) == 1
    finally:
        await redis.execute_command("ACL", "DELUSER", *role_names)


def test_provision_acl_needs_both_passwords(role_names: tuple[str, str]) -> None:
    result = runner.invoke(cli, ["redis", "provision-acl"], env={"BATON_REDIS_WORKER_PASSWORD": ""})
    assert result.exit_code == 2
    assert "BATON_REDIS_ENGINE_PASSWORD" in result.output


def test_a_credential_serves_its_own_queue_only(monkeypatch: pytest.MonkeyPatch) -> None:
    credential = WorkerCredential(str(uuid.uuid4()), "builds", "bw-x", "pw", "redis://h:1/0")
    result = runner.invoke(cli, ["worker", "--queue", "other", "--credential", credential.encode()])
    assert result.exit_code == 2
    assert "serves queue 'builds' only" in result.output


def test_baton_worker_reads_the_workers_own_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """`baton worker` runs `baton-worker`'s code: a JWT secret the API would refuse (too
    short) and a database URL are not read; what the worker lacks in production is named."""
    monkeypatch.setenv("BATON_ENVIRONMENT", "production")
    monkeypatch.setenv("BATON_REDIS_URL", "redis://redis.invalid:6379/0")
    monkeypatch.setenv("BATON_JWT_SECRET", "short")
    monkeypatch.setenv("BATON_DATABASE_URL", "not a url")
    monkeypatch.delenv("BATON_WORKER_TRANSIT_KEY", raising=False)
    result = runner.invoke(cli, ["worker"])
    assert result.exit_code == 2
    assert "Refusing to start: BATON_REDIS_URL must name a Redis user" in result.output
    assert "BATON_WORKER_TRANSIT_KEY must be set" in result.output
    assert "JWT" not in result.output and "DATABASE" not in result.output


def test_baton_worker_names_an_unusable_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_WORKER_SANDBOX_CPU_SECONDS", "an hour")
    result = runner.invoke(cli, ["worker"])
    assert result.exit_code == 2
    assert "BATON_WORKER_SANDBOX_CPU_SECONDS must be a whole number" in result.output

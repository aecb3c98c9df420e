"""The ``baton`` command line against the test database.

The commands call ``asyncio.run`` themselves, so they are invoked in a worker thread
(``asyncio.to_thread``) while the test itself runs on pytest-asyncio's session loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from backend.cli import app as cli
from backend.core.settings import Settings
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_api_token, create_tenant

runner = CliRunner()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point ``Settings()`` at the test services; undo the CLI's logging setup afterwards."""
    assert settings.database_url and settings.redis_url
    monkeypatch.setenv("BATON_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BATON_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("BATON_ENVIRONMENT", "test")
    monkeypatch.delenv("BATON_APP_DATABASE_URL", raising=False)
    monkeypatch.setenv("BATON_APP_DB_ROLE", settings.app_db_role)
    monkeypatch.setenv("BATON_APP_DB_PASSWORD", settings.app_db_password)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    yield
    root.handlers, root.level = handlers, level
    structlog.configure(**structlog_config)


async def _invoke(*args: str) -> Result:
    return await asyncio.to_thread(lambda: runner.invoke(cli, list(args)))


async def _tamper(engine: AsyncEngine, account: Account, seq: int) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("UPDATE audit_events SET action = 'edited' WHERE tenant_id = :t AND seq = :s"),
            {"t": account.tenant_id, "s": seq},
        )
        assert result.rowcount == 1


async def test_audit_verify_intact_tenant(cli_env: None, client: AsyncClient) -> None:
    account = await create_tenant(client)
    await create_api_token(client, account, "viewer")
    result = await _invoke("audit", "verify", "--tenant", account.tenant_slug)
    assert result.exit_code == 0, result.output
    assert f"{account.tenant_slug}: ok (3 events)" in result.output


async def test_audit_verify_tampered_tenant(
    cli_env: None, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    await create_api_token(client, account, "viewer")
    await create_api_token(client, account, "viewer")
    await _tamper(owner_engine, account, 3)
    result = await _invoke("audit", "verify", "--tenant", account.tenant_slug)
    assert result.exit_code == 1, result.output
    assert account.tenant_slug in result.output
    assert "BROKEN at seq 3" in result.output
    assert ": ok (" not in result.output


async def test_audit_verify_deleted_row(
    cli_env: None, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    await create_api_token(client, account, "viewer")
    await create_api_token(client, account, "viewer")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM audit_events WHERE tenant_id = :t AND seq = 2"),
            {"t": account.tenant_id},
        )
    result = await _invoke("audit", "verify", "--tenant", account.tenant_slug)
    assert result.exit_code == 1, result.output
    assert f"{account.tenant_slug}: BROKEN at seq 2" in result.output


async def test_audit_verify_every_tenant(
    cli_env: None, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    """Without --tenant every tenant is checked; one broken chain fails the run."""
    intact = await create_tenant(client)
    broken = await create_tenant(client)
    await _tamper(owner_engine, broken, 1)
    result = await _invoke("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"{intact.tenant_slug}: ok (2 events)" in result.output
    assert f"{broken.tenant_slug}: BROKEN at seq 1" in result.output


async def test_audit_verify_unknown_tenant(cli_env: None) -> None:
    result = await _invoke("audit", "verify", "--tenant", "unknown-slug")
    assert result.exit_code == 1, result.output
    assert "unknown-slug" in result.output


async def test_audit_verify_does_not_write(
    cli_env: None, client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(client)
    query = text("SELECT count(*) FROM audit_events WHERE tenant_id = :t")
    async with owner_engine.connect() as conn:
        before = (await conn.execute(query, {"t": account.tenant_id})).scalar_one()
    assert (await _invoke("audit", "verify", "--tenant", account.tenant_slug)).exit_code == 0
    async with owner_engine.connect() as conn:
        after = (await conn.execute(query, {"t": account.tenant_id})).scalar_one()
    assert before == after


async def test_db_upgrade_is_idempotent(
    cli_env: None, settings: Settings, owner_engine: AsyncEngine
) -> None:
    for _ in range(2):
        result = await _invoke("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "Database is up to date." in result.output
    async with owner_engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        role = (
            await conn.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"),
                {"r": settings.app_db_role},
            )
        ).one()
        audit_privileges = (
            (
                await conn.execute(
                    text(
                        """SELECT privilege_type FROM information_schema.role_table_grants
                       WHERE grantee = :r AND table_name = 'audit_events'"""
                    ),
                    {"r": settings.app_db_role},
                )
            )
            .scalars()
            .all()
        )
    assert len(version) == 1
    assert (role.rolsuper, role.rolbypassrls) == (False, False)
    assert set(audit_privileges) == {"INSERT", "SELECT"}


async def test_the_app_still_works_after_db_upgrade(cli_env: None, client: AsyncClient) -> None:
    """Re-provisioning the runtime role keeps its password and grants (the API logs in)."""
    assert (await _invoke("db", "upgrade")).exit_code == 0
    account = await create_tenant(client)
    response = await client.get("/api/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text


def test_help_lists_the_commands() -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("db", "audit", "admin", "api", "dev"):
        assert command in result.output


async def test_create_superuser_makes_a_platform_admin_who_can_log_in(
    cli_env: None, client: AsyncClient
) -> None:
    email = f"root-{uuid.uuid4().hex[:8]}@example.com"
    result = await _invoke(
        "admin", "create-superuser", "--email", email, "--password", "a-long-admin-password"
    )
    assert result.exit_code == 0, result.output
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "a-long-admin-password"}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    tenants = await client.get("/api/v1/admin/tenants", headers=headers)
    assert tenants.status_code == 200


async def test_create_superuser_promotes_an_existing_account(
    cli_env: None, client: AsyncClient
) -> None:
    account = await create_tenant(client)
    assert_error(
        await client.get("/api/v1/admin/tenants", headers=account.headers), 403, "forbidden"
    )
    result = await _invoke(
        "admin", "create-superuser", "--email", account.email, "--password", account.password
    )
    assert result.exit_code == 0, result.output
    assert (await client.get("/api/v1/admin/tenants", headers=account.headers)).status_code == 200

"""The ``baton`` command line against the test database.

The commands call ``asyncio.run`` themselves, so they are invoked in a worker thread
(``asyncio.to_thread``) while the test itself runs on pytest-asyncio's session loop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from typer.testing import CliRunner, Result

from backend.cli import app as cli
from backend.cli import is_loopback, upgrade_database
from backend.core.embedded import start_postgres, stop_postgres
from backend.core.settings import Settings
from backend.retention.service import prune_tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_api_token, create_member, create_tenant
from tests.runs.factories import create_job, python_task

runner = CliRunner()


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


async def test_audit_verify_accepts_denied_requests_in_the_chain(
    cli_env: None, client: AsyncClient
) -> None:
    """``request.denied`` events, written in transactions of their own, extend the chain
    like every other event."""
    account = await create_tenant(client)
    other = await create_tenant(client)
    viewer = await create_member(client, account, "viewer")  # added, logged in: 4 events
    forbidden = await client.post(
        "/api/v1/tokens", json={"name": "x", "role": "viewer"}, headers=viewer.headers
    )
    assert_error(forbidden, 403, "forbidden")
    job = await create_job(client, other, [python_task("a")])
    elsewhere = await client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers)
    assert_error(elsewhere, 404, "not_found")
    result = await _invoke("audit", "verify", "--tenant", account.tenant_slug)
    assert result.exit_code == 0, result.output
    assert f"{account.tenant_slug}: ok (6 events)" in result.output  # and the 2 denials


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


async def test_audit_verify_passes_after_a_retention_cut(
    cli_env: None, app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    """A chain cut by the audit retention starts at its signed checkpoint: still ok."""
    account = await create_tenant(client)
    await create_api_token(client, account, "viewer")
    audited = settings.model_copy(update={"audit_retention_days": 1})
    later = datetime.now(UTC) + timedelta(days=10)
    cut = await prune_tenant(app.state.sessionmaker, audited, account.tenant_id, None, now=later)
    assert cut.audit_events == 2
    await create_api_token(client, account, "viewer")  # the chain goes on after the cut
    result = await _invoke("audit", "verify", "--tenant", account.tenant_slug)
    assert result.exit_code == 0, result.output
    assert f"{account.tenant_slug}: ok (2 events)" in result.output


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


@pytest.mark.parametrize("command", ["api", "dev"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "baton.example.org"])
def test_serving_beyond_loopback_with_a_development_secret_is_refused(
    command: str, host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment that forgot BATON_JWT_SECRET must not serve tokens signed by a key in a
    file of its data directory; it stops before starting anything."""
    monkeypatch.delenv("BATON_JWT_SECRET", raising=False)
    monkeypatch.setenv("BATON_ENVIRONMENT", "dev")
    monkeypatch.setenv("BATON_HOST", host)
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))
    result = runner.invoke(cli, [command])
    assert result.exit_code == 2, result.output
    assert f"Refusing to serve on {host}" in result.output
    assert "BATON_JWT_SECRET" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "app-db-password",
        "jwt-secret",
        "secrets-kek",
        "worker-transit-key",
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory outside pytest's ``/tmp/pytest-of-<user>``: every pytest session that
    starts resets that directory to 0700, which the embedded PostgreSQL's own system user
    could then no longer traverse."""
    path = Path(tempfile.mkdtemp(prefix="baton-cli-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.embedded
def test_admin_commands_use_the_embedded_postgres_of_the_data_dir(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Next to `make run` (no BATON_DATABASE_URL), the admin commands find the embedded
    PostgreSQL that `baton dev` keeps in the data directory, as `baton dev` does."""
    for name in ("DATABASE_URL", "APP_DATABASE_URL", "REDIS_URL", "JWT_SECRET", "APP_DB_PASSWORD"):
        monkeypatch.delenv(f"BATON_{name}", raising=False)
    monkeypatch.setenv("BATON_ENVIRONMENT", "dev")
    monkeypatch.setenv("BATON_DATA_DIR", str(shared_tmp))
    server = start_postgres(shared_tmp.resolve())  # what `baton dev` leaves running
    try:
        upgrade_database(Settings(_env_file=None, database_url=server.url))  # type: ignore[call-arg]
        email = f"root-{uuid.uuid4().hex[:8]}@example.com"
        created = runner.invoke(
            cli, ["admin", "create-superuser", "--email", email, "--password", "a-long-password"]
        )
        assert created.exit_code == 0, created.output
        assert f"{email} is a platform administrator." in created.output
        verified = runner.invoke(cli, ["audit", "verify"])
        assert verified.exit_code == 0, verified.output
        assert ": ok (" in verified.output
        upgraded = runner.invoke(cli, ["db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output

        async def is_superuser() -> bool:
            engine = create_async_engine(server.url)
            try:
                async with engine.connect() as conn:
                    query = text("SELECT is_superuser FROM users WHERE email = :e")
                    return bool((await conn.execute(query, {"e": email})).scalar_one())
            finally:
                await engine.dispose()

        assert asyncio.run(is_superuser())
    finally:
        stop_postgres(server)

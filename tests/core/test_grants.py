"""The platform tables (``users``, ``tenants``) have no tenant scope, so the runtime role
gets only the grants the API needs: it cannot make anybody a superuser, give a tenant a
plan, quota or weight, or delete a user or tenant - not even with raw SQL."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.schema import PLATFORM_UPDATABLE
from backend.core.settings import Settings
from tests.fixtures.factories import Account


async def _refused(
    engine: AsyncEngine, statement: str, params: dict[str, object], why: str
) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        with pytest.raises(DBAPIError, match=why):
            await conn.execute(text(statement), params)
        await conn.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET is_superuser = true WHERE id = :user",
        "UPDATE users SET email = 'taken-over@example.com' WHERE id = :user",
        "UPDATE tenants SET max_concurrent_tasks = 100000 WHERE id = :tenant",
        "UPDATE tenants SET weight = 1000 WHERE id = :tenant",
        "DELETE FROM users WHERE id = :user",
        "DELETE FROM tenants WHERE id = :tenant",
        "TRUNCATE users CASCADE",
        "TRUNCATE tenants CASCADE",
    ],
)
async def test_runtime_role_cannot_change_platform_administration(
    statement: str, owner: Account, runtime_engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    params = {"user": owner.user_id, "tenant": owner.tenant_id}
    if "TRUNCATE" in statement:
        params = {}
    await _refused(runtime_engine, statement, params, "permission denied")
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """SELECT u.is_superuser, t.plan, t.max_concurrent_tasks, t.weight
                       FROM users u, tenants t WHERE u.id = :user AND t.id = :tenant"""
                ),
                {"user": owner.user_id, "tenant": owner.tenant_id},
            )
        ).one()
    assert tuple(row) == (False, "free", None, None)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO users (id, email, is_superuser) VALUES (:id, :email, true)",
        "INSERT INTO tenants (id, slug, name, max_concurrent_tasks) VALUES (:id, :slug, 'x', 9)",
        "INSERT INTO tenants (id, slug, name, weight) VALUES (:id, :slug, 'x', 50)",
        "INSERT INTO tenants (id, slug, name, plan) VALUES (:id, :slug, 'x', 'enterprise')",
        "INSERT INTO tenants (id, slug, name, status) VALUES (:id, :slug, 'x', 'suspended')",
    ],
)
async def test_runtime_role_cannot_insert_a_superuser_or_a_privileged_tenant(
    statement: str, runtime_engine: AsyncEngine
) -> None:
    marker = uuid.uuid4().hex[:10]
    params = {"id": uuid.uuid4(), "email": f"root-{marker}@example.com", "slug": f"t-{marker}"}
    await _refused(runtime_engine, statement, params, "row-level security")


async def test_runtime_role_may_write_what_the_api_writes(
    owner: Account, runtime_engine: AsyncEngine
) -> None:
    """Signup (a plain user and tenant), login (last_login_at), suspend/resume (status)."""
    marker = uuid.uuid4().hex[:10]
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await conn.execute(
            text("INSERT INTO users (id, email, is_superuser) VALUES (:id, :e, false)"),
            {"id": uuid.uuid4(), "e": f"plain-{marker}@example.com"},
        )
        await conn.execute(
            text("INSERT INTO tenants (id, slug, name) VALUES (:id, :s, 'x')"),
            {"id": uuid.uuid4(), "s": f"t-{marker}"},
        )
        await conn.execute(
            text("UPDATE users SET last_login_at = now() WHERE id = :u"), {"u": owner.user_id}
        )
        await conn.execute(
            text("UPDATE tenants SET status = 'suspended' WHERE id = :t"), {"t": owner.tenant_id}
        )
        locked = await conn.execute(
            text("SELECT id FROM tenants WHERE id = :t FOR UPDATE"), {"t": owner.tenant_id}
        )
        assert locked.scalar_one() == owner.tenant_id
        await conn.rollback()


async def test_the_update_grants_on_platform_tables_are_exactly_the_listed_columns(
    settings: Settings, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                """SELECT table_name, column_name, privilege_type
                   FROM information_schema.column_privileges
                   WHERE grantee = :r AND table_name IN ('users', 'tenants')
                     AND privilege_type <> 'SELECT' AND privilege_type <> 'INSERT'"""
            ),
            {"r": settings.app_db_role},
        )
        found = {(r.table_name, r.column_name, r.privilege_type) for r in rows}
        table_level = await conn.execute(
            text(
                """SELECT table_name, privilege_type FROM information_schema.table_privileges
                   WHERE grantee = :r AND table_name IN ('users', 'tenants')"""
            ),
            {"r": settings.app_db_role},
        )
        table_privileges = {(r.table_name, r.privilege_type) for r in table_level}
    expected = {(t, c, "UPDATE") for t, columns in PLATFORM_UPDATABLE.items() for c in columns}
    assert found == expected
    # ``plan``: platform administrators and billing change plans through the API.
    # ``password_hash``, ``email_verified_at``: password reset and email verification.
    assert PLATFORM_UPDATABLE == {
        "users": ("last_login_at", "password_hash", "email_verified_at"),
        "tenants": ("status", "plan"),
    }
    for table in ("users", "tenants"):
        assert {p for t, p in table_privileges if t == table} == {"SELECT", "INSERT"}


async def test_the_admin_api_still_suspends_and_resumes(
    client: AsyncClient, owner: Account, stranger: Account, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET is_superuser = true WHERE id = :u"), {"u": owner.user_id}
        )
    url = f"/api/v1/admin/tenants/{stranger.tenant_id}"
    suspended = await client.post(f"{url}/suspend", headers=owner.headers)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    resumed = await client.post(f"{url}/resume", headers=owner.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"

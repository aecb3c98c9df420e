"""Row-level security, checked with raw SQL as the unprivileged runtime role.

The runtime role (``baton_app``) is the role the API connects as. These tests bypass the
repositories on purpose: a query without any ``tenant_id`` filter must still see only
the tenant the transaction was scoped to, and nothing at all when no tenant is set.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.core.settings import Settings
from tests.fixtures.factories import Account, create_api_token, create_member, create_tenant

TENANT_TABLES = ("memberships", "api_tokens", "refresh_tokens", "audit_events")


async def _populate(client: AsyncClient, account: Account) -> None:
    """Give the tenant rows in every tenant-owned table (signup already adds most)."""
    await create_api_token(client, account, "viewer")
    await create_member(client, account, "viewer")


@pytest.fixture
async def tenant_a(client: AsyncClient) -> Account:
    account = await create_tenant(client)
    await _populate(client, account)
    return account


@pytest.fixture
async def tenant_b(client: AsyncClient) -> Account:
    account = await create_tenant(client)
    await _populate(client, account)
    return account


async def _scope(conn: AsyncConnection, tenant_id: uuid.UUID) -> None:
    await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)})


async def _tenant_ids(conn: AsyncConnection, table: str) -> set[uuid.UUID]:
    rows = (await conn.execute(text(f"SELECT tenant_id FROM {table}"))).all()
    return {row[0] for row in rows}


async def _tenant_tables(conn: AsyncConnection) -> list[str]:
    """Every table of the public schema with a ``tenant_id`` column."""
    rows = await conn.execute(
        text(
            """SELECT c.table_name FROM information_schema.columns c
               JOIN information_schema.tables t
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'
                 AND t.table_type = 'BASE TABLE'
               ORDER BY c.table_name"""
        )
    )
    return [row[0] for row in rows]


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_no_tenant_set_sees_no_rows(
    table: str,
    tenant_a: Account,
    tenant_b: Account,
    owner_engine: AsyncEngine,
    runtime_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        seen_by_owner = await _tenant_ids(conn, table)
    assert {tenant_a.tenant_id, tenant_b.tenant_id} <= seen_by_owner

    async with runtime_engine.connect() as conn:
        count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    assert count == 0
    assert rows == []


async def test_empty_tenant_setting_sees_no_rows(
    tenant_a: Account, runtime_engine: AsyncEngine
) -> None:
    """An empty ``app.tenant_id`` (what a finished transaction leaves) matches nothing."""
    async with runtime_engine.begin() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', '', true)"))
        for table in TENANT_TABLES:
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_scoped_transaction_sees_only_its_tenant(
    table: str,
    tenant_a: Account,
    tenant_b: Account,
    runtime_engine: AsyncEngine,
) -> None:
    async with runtime_engine.begin() as conn:
        await _scope(conn, tenant_a.tenant_id)
        assert await _tenant_ids(conn, table) == {tenant_a.tenant_id}
    async with runtime_engine.begin() as conn:
        await _scope(conn, tenant_b.tenant_id)
        assert await _tenant_ids(conn, table) == {tenant_b.tenant_id}


async def test_scoped_counts_match_the_owner_view(
    tenant_a: Account, owner_engine: AsyncEngine, runtime_engine: AsyncEngine
) -> None:
    """Scoping hides other tenants but none of the tenant's own rows."""
    for table in TENANT_TABLES:
        async with owner_engine.connect() as conn:
            expected = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"),
                    {"t": tenant_a.tenant_id},
                )
            ).scalar_one()
        async with runtime_engine.begin() as conn:
            await _scope(conn, tenant_a.tenant_id)
            got = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        assert got == expected > 0, table


async def test_insert_for_another_tenant_is_refused(
    tenant_a: Account, tenant_b: Account, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                text(
                    """INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type,
                           action, outcome, details, prev_hash, hash)
                       VALUES (:tenant, 999999, :id, :at, 'system', 'forged', 'success',
                               '{}'::jsonb, :zero, :zero)"""
                ),
                {
                    "tenant": tenant_b.tenant_id,
                    "id": uuid.uuid4(),
                    "at": datetime.now(UTC),
                    "zero": "0" * 64,
                },
            )
        await conn.rollback()


async def test_membership_insert_for_another_tenant_is_refused(
    tenant_a: Account, tenant_b: Account, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                text("INSERT INTO memberships (tenant_id, user_id, role) VALUES (:t, :u, 'owner')"),
                {"t": tenant_b.tenant_id, "u": tenant_a.user_id},
            )
        await conn.rollback()


async def test_update_cannot_move_a_row_to_another_tenant(
    tenant_a: Account, tenant_b: Account, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                text("UPDATE api_tokens SET tenant_id = :b"), {"b": tenant_b.tenant_id}
            )
        await conn.rollback()


async def test_update_and_delete_do_not_reach_other_tenants(
    tenant_a: Account, tenant_b: Account, runtime_engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    """An unfiltered UPDATE/DELETE scoped to A touches A's rows only (rolled back)."""
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        updated = await conn.execute(text("UPDATE api_tokens SET name = 'renamed'"))
        deleted = await conn.execute(text("DELETE FROM refresh_tokens"))
        assert updated.rowcount >= 1
        assert deleted.rowcount >= 1
        left = await _tenant_ids(conn, "refresh_tokens")
        assert left == set()
        await conn.rollback()
    async with owner_engine.connect() as conn:
        names = (
            (
                await conn.execute(
                    text("SELECT name FROM api_tokens WHERE tenant_id = :b"),
                    {"b": tenant_b.tenant_id},
                )
            )
            .scalars()
            .all()
        )
    assert names and "renamed" not in names


async def test_tenant_setting_does_not_leak_to_the_next_transaction(
    tenant_a: Account, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        assert (await conn.execute(text("SELECT count(*) FROM memberships"))).scalar_one() > 0
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.commit()

        await conn.begin()
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid
        setting = (
            await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
        ).scalar_one()
        assert setting in (None, "")
        for table in TENANT_TABLES:
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0
        await conn.rollback()


async def test_tenant_setting_does_not_leak_after_rollback(
    tenant_a: Account, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        await conn.begin()
        await _scope(conn, tenant_a.tenant_id)
        await conn.rollback()
        await conn.begin()
        assert (await conn.execute(text("SELECT count(*) FROM api_tokens"))).scalar_one() == 0
        await conn.rollback()


async def test_runtime_role_is_unprivileged(settings: Settings, owner_engine: AsyncEngine) -> None:
    role = settings.app_db_role
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolcanlogin
                       FROM pg_roles WHERE rolname = :r"""
                ),
                {"r": role},
            )
        ).one()
        owned_tables = (
            await conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE tableowner = :r"), {"r": role}
            )
        ).scalar_one()
        owned_relations = (
            await conn.execute(
                text(
                    """SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
                       WHERE r.rolname = :r"""
                ),
                {"r": role},
            )
        ).scalar_one()
        member_of = (
            await conn.execute(
                text(
                    """SELECT count(*) FROM pg_auth_members m
                       JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = :r"""
                ),
                {"r": role},
            )
        ).scalar_one()
    assert row.rolsuper is False
    assert row.rolbypassrls is False
    assert row.rolcreatedb is False
    assert row.rolcreaterole is False
    assert row.rolcanlogin is True
    assert owned_tables == 0
    assert owned_relations == 0
    assert member_of == 0


async def test_runtime_connection_is_the_runtime_role(
    settings: Settings, runtime_engine: AsyncEngine
) -> None:
    async with runtime_engine.connect() as conn:
        user = (await conn.execute(text("SELECT current_user"))).scalar_one()
        superuser = (await conn.execute(text("SHOW is_superuser"))).scalar_one()
    assert user == settings.app_db_role
    assert superuser == "off"


async def test_every_tenant_table_forces_row_level_security(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        tables = await _tenant_tables(conn)
        assert set(TENANT_TABLES) <= set(tables)
        for table in tables:
            row = (
                await conn.execute(
                    text(
                        """SELECT c.relrowsecurity, c.relforcerowsecurity
                           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'public' AND c.relname = :t"""
                    ),
                    {"t": table},
                )
            ).one()
            assert row.relrowsecurity, f"{table}: row-level security not enabled"
            assert row.relforcerowsecurity, f"{table}: row-level security not forced"
            policies = (
                await conn.execute(
                    text(
                        """SELECT qual, with_check FROM pg_policies
                           WHERE schemaname = 'public' AND tablename = :t"""
                    ),
                    {"t": table},
                )
            ).all()
            assert policies, f"{table}: no policy"
            for qual, with_check in policies:
                assert "app.tenant_id" in (qual or ""), f"{table}: policy ignores the tenant"
                assert "app.tenant_id" in (with_check or ""), f"{table}: no WITH CHECK"


async def test_every_index_of_a_tenant_table_leads_with_tenant_id(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        tables = await _tenant_tables(conn)
        rows = (
            await conn.execute(
                text(
                    """SELECT t.relname AS table_name, i.relname AS index_name,
                              a.attname AS first_column
                       FROM pg_index x
                       JOIN pg_class t ON t.oid = x.indrelid
                       JOIN pg_class i ON i.oid = x.indexrelid
                       JOIN pg_namespace n ON n.oid = t.relnamespace
                       LEFT JOIN pg_attribute a
                         ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
                       WHERE n.nspname = 'public' AND t.relname = ANY(:tables)"""
                ),
                {"tables": tables},
            )
        ).all()
    assert {row.table_name for row in rows} == set(tables)
    wrong = [
        (r.table_name, r.index_name, r.first_column) for r in rows if r.first_column != "tenant_id"
    ]
    assert wrong == []


async def test_runtime_role_cannot_update_or_delete_audit_events(
    tenant_a: Account, runtime_engine: AsyncEngine
) -> None:
    for statement in (
        "UPDATE audit_events SET action = 'tampered'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        async with runtime_engine.connect() as conn:
            await conn.begin()
            await _scope(conn, tenant_a.tenant_id)
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text(statement))
            await conn.rollback()


async def test_runtime_role_cannot_touch_alembic_version(runtime_engine: AsyncEngine) -> None:
    async with runtime_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="permission denied"):
            await conn.execute(text("SELECT * FROM alembic_version"))

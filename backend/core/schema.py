"""Bring a database to the current schema and provision the runtime role.

Runs as the owner role (``BATON_DATABASE_URL``): Alembic migrations first, then the
unprivileged role the API connects as - LOGIN, NOSUPERUSER, NOBYPASSRLS, owning nothing -
with DML on the tenant tables, only INSERT/SELECT on the append-only audit log, and on
the platform tables (``users``, ``tenants``, no tenant scope) only what the API writes:

- ``users``: SELECT, INSERT (never a superuser: policy in migration 0006), UPDATE of
  ``last_login_at``, ``password_hash`` and ``email_verified_at`` only (login, password
  change and reset, email verification);
- ``tenants``: SELECT, INSERT (active, free plan, no own quota: same migration), UPDATE
  of ``status`` and ``plan`` only (platform administrators suspend, resume and change plans
  through the API; billing changes plans too, docs/billing.md).

The tables without a tenant scope by nature - ``plans``, ``account_tokens``,
``billing_accounts``, ``stripe_events`` - keep the default DML grant: the API edits the
plans catalogue and Stripe's webhook writes billing.

Platform administration that the API does not offer - the superuser flag, a tenant's
own quota and weight - belongs to the owner role: ``baton admin create-superuser``
connects as it, and quotas are set in SQL as it (docs/security.md).
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The platform tables' columns the runtime role may UPDATE (grep the services before
# adding one: every entry widens what a compromised API process could change).
PLATFORM_UPDATABLE = {
    "users": ("last_login_at", "password_hash", "email_verified_at"),
    "tenants": ("status", "plan"),
}


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def run_migrations(database_url: str) -> None:
    """Alembic ``upgrade head``. Synchronous: call it outside a running event loop."""
    command.upgrade(alembic_config(database_url), "head")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def provision_runtime_role(settings: Settings) -> None:
    """Create or update the runtime role and grant it exactly what the app needs."""
    role = settings.app_db_role
    if not _IDENTIFIER.match(role):
        raise ValueError(f"BATON_APP_DB_ROLE {role!r} is not a plain lower-case identifier")
    owner_url = settings.owner_database_url()
    database = make_url(owner_url).database or "postgres"
    engine = create_async_engine(owner_url)
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            )
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(
                text(
                    f"{verb} ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                    f"PASSWORD {_literal(settings.app_db_password)}"
                )
            )
            for statement in (
                f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
                f"GRANT USAGE ON SCHEMA public TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
                f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {role}",
                # Unsealed audit events: appended, never edited; released only by the
                # sealer's function once their sealed copy is in the chain.
                f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_pending FROM {role}",
                f"GRANT EXECUTE ON FUNCTION audit_release_sealed(uuid, bigint[]) TO {role}",
                # Retention cuts the chain only through this function, which leaves a
                # signed checkpoint (migration 0013); checkpoints are never edited.
                f"GRANT EXECUTE ON FUNCTION audit_cut(uuid, bigint, timestamptz, text, text)"
                f" TO {role}",
                f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM {role}",
                # The engine keeps the history tables' weekly partitions (migration 0014).
                "GRANT EXECUTE ON FUNCTION"
                f" history_ensure_partitions(text, timestamptz, timestamptz) TO {role}",
                f"GRANT EXECUTE ON FUNCTION history_drop_partitions(text, timestamptz) TO {role}",
                # The engine's sweep finds ended worker credentials' Redis users across
                # tenants (migration 0019).
                f"GRANT EXECUTE ON FUNCTION worker_users_to_remove() TO {role}",
                f"GRANT EXECUTE ON FUNCTION reactor_due_tenants() TO {role}",
                # The engine keeps the queue tables' statistics fresh (migration 0022).
                "GRANT EXECUTE ON FUNCTION refresh_queue_statistics(bigint, double precision)"
                f" TO {role}",
                f"REVOKE ALL ON alembic_version FROM {role}",
                *(
                    statement
                    for table, columns in PLATFORM_UPDATABLE.items()
                    for statement in (
                        f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}",
                        f"GRANT UPDATE ({', '.join(columns)}) ON {table} TO {role}",
                    )
                ),
            ):
                await conn.execute(text(statement))
    finally:
        await engine.dispose()

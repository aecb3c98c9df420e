"""Platform tables: what the runtime role may insert into ``users`` and ``tenants``.

Column grants (``backend.core.schema.provision_runtime_role``) let the runtime role update
only ``users.last_login_at`` and ``tenants.status``; a grant cannot say *which values* a
new row may carry, so these policies do: a user signing up is never a superuser, and a
new tenant is active, on the free plan, with no quota or weight of its own. Row-level
security is enabled but not forced: the owner role (migrations, ``baton admin``) is not
bound, and every row stays readable to the runtime role (these tables are not
tenant-owned; the application scopes what it shows).

Revision ID: 0006_platform_grants
Revises: 0005_schedules
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006_platform_grants"
down_revision = "0005_schedules"
branch_labels = None
depends_on = None

NEW_ROW_RULES = {
    "users": "NOT is_superuser",
    "tenants": (
        "status = 'active' AND plan = 'free' AND max_concurrent_tasks IS NULL AND weight IS NULL"
    ),
}


def upgrade() -> None:
    for table, rule in NEW_ROW_RULES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY platform_read ON {table} FOR SELECT USING (true)")
        op.execute(f"CREATE POLICY platform_insert ON {table} FOR INSERT WITH CHECK ({rule})")
        # Which columns may change is the column grant's business, not the policy's.
        op.execute(
            f"CREATE POLICY platform_update ON {table} FOR UPDATE USING (true) WITH CHECK (true)"
        )


def downgrade() -> None:
    for table in NEW_ROW_RULES:
        for policy in ("platform_read", "platform_insert", "platform_update"):
            op.execute(f"DROP POLICY {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

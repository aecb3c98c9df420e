"""Stripe Billing Meters: ``meter_reports``, the usage Baton sent (or is about to send) to
Stripe's meters, one row per increment of a tenant's day of one meter, with the stable
identifier Stripe deduplicates by (tenant-owned, row-level security).

Revision ID: 0013_meter_reports
Revises: 0012_plans
Create Date: 2026-12-06
"""

from alembic import op

revision = "0013_meter_reports"
down_revision = "0012_plans"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE meter_reports (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            meter varchar(40) NOT NULL,
            seq integer NOT NULL,
            value bigint NOT NULL,
            identifier varchar(100) NOT NULL,
            event_name varchar(100) NOT NULL,
            customer_id varchar(255) NOT NULL,
            event_time bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            PRIMARY KEY (tenant_id, day, meter, seq),
            UNIQUE (tenant_id, identifier)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_meter_reports_unsent ON meter_reports (tenant_id, created_at)"
        " WHERE sent_at IS NULL"
    )
    op.execute("ALTER TABLE meter_reports ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE meter_reports FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON meter_reports
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE meter_reports")

"""The outbox of runs refused by a plan limit (a scheduled fire past the runs per month, an
inbound webhook delivery or a job-to-job trigger refused with ``quota_exceeded``), written
in the transaction that records the refusal and consumed by the reactor loop, which queues
the tenant's ``quota_cancelled`` notifications.

Revision ID: 0017_run_refusal_outbox
Revises: 0016_history_partitions
Create Date: 2026-12-06
"""

from alembic import op

revision = "0017_run_refusal_outbox"
down_revision = "0016_history_partitions"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE run_refusal_outbox (
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL,
            job_id uuid NOT NULL,
            source varchar(20) NOT NULL CHECK (source IN ('schedule', 'webhook', 'upstream')),
            limit_name varchar(40),
            reason varchar(300) NOT NULL,
            refused_at timestamptz NOT NULL,
            details jsonb NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("ALTER TABLE run_refusal_outbox ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE run_refusal_outbox FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON run_refusal_outbox
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE run_refusal_outbox")

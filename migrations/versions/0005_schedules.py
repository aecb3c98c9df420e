"""Schedules (one per scheduled job) and the tick ledger.

Revision ID: 0005_schedules
Revises: 0004_admission_index
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005_schedules"
down_revision = "0004_admission_index"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = """
CREATE TABLE schedules (
    tenant_id uuid NOT NULL,
    job_id uuid NOT NULL,
    job_version integer NOT NULL,
    spec jsonb NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    paused_since timestamptz,
    next_due_at timestamptz,
    checked_until timestamptz NOT NULL,
    fence bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_schedules_due ON schedules (tenant_id, next_due_at) WHERE NOT paused;

CREATE TABLE schedule_ticks (
    tenant_id uuid NOT NULL,
    job_id uuid NOT NULL,
    scheduled_for timestamptz NOT NULL,
    wall_time varchar(40) NOT NULL,
    outcome varchar(10) NOT NULL CHECK (outcome IN ('fired', 'skipped', 'missed')),
    reason text,
    run_id uuid,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id, scheduled_for),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX ux_runs_scheduled_instant ON runs (tenant_id, job_id, scheduled_for)
    WHERE trigger = 'schedule'
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)
    for table in ("schedules", "schedule_ticks"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"""CREATE POLICY tenant_isolation ON {table}
                USING (tenant_id = {CURRENT_TENANT})
                WITH CHECK (tenant_id = {CURRENT_TENANT})"""
        )


def downgrade() -> None:
    op.execute("DROP INDEX ux_runs_scheduled_instant")
    op.execute("DROP TABLE schedule_ticks, schedules")

"""Jobs, their versions, runs, task runs, attempts and log lines; tenant quotas.

Revision ID: 0002_jobs_and_runs
Revises: 0001_foundation
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002_jobs_and_runs"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TENANT_TABLES = ("jobs", "job_versions", "runs", "task_runs", "task_attempts", "task_logs")
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = """
ALTER TABLE tenants
    ADD COLUMN max_concurrent_tasks integer CHECK (max_concurrent_tasks > 0),
    ADD COLUMN weight integer CHECK (weight > 0);

CREATE TABLE jobs (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id uuid NOT NULL,
    name varchar(100) NOT NULL,
    description text,
    queue varchar(63) NOT NULL,
    concurrency_policy varchar(10) NOT NULL DEFAULT 'allow'
        CHECK (concurrency_policy IN ('allow', 'forbid', 'replace')),
    current_version integer NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ux_jobs_name ON jobs (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX ix_jobs_created ON jobs (tenant_id, created_at);

CREATE TABLE job_versions (
    tenant_id uuid NOT NULL,
    job_id uuid NOT NULL,
    version integer NOT NULL,
    spec jsonb NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id, version),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE runs (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    job_id uuid NOT NULL,
    job_version integer NOT NULL,
    status varchar(20) NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger varchar(20) NOT NULL,
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key varchar(200),
    run_at timestamptz NOT NULL,
    scheduled_for timestamptz,
    deadline_at timestamptz,
    reason text,
    rerun_of uuid,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, job_id, job_version)
        REFERENCES job_versions (tenant_id, job_id, version) ON DELETE CASCADE
);
CREATE UNIQUE INDEX ux_runs_idempotency ON runs (tenant_id, job_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX ix_runs_job ON runs (tenant_id, job_id, created_at DESC, id DESC);
CREATE INDEX ix_runs_recent ON runs (tenant_id, created_at DESC, id DESC);
CREATE INDEX ix_runs_active ON runs (tenant_id, job_id, status)
    WHERE status IN ('queued', 'running');

CREATE TABLE task_runs (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    run_id uuid NOT NULL,
    name varchar(100) NOT NULL,
    queue varchar(63) NOT NULL,
    status varchar(20) NOT NULL
        CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled',
                          'skipped', 'upstream_failed')),
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    ready_at timestamptz,
    dispatched_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    deadline_at timestamptz,
    heartbeat_at timestamptz,
    worker varchar(200),
    output jsonb,
    error text,
    reason varchar(30),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, run_id, name),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_task_runs_ready ON task_runs (tenant_id, ready_at)
    WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX ix_task_runs_active ON task_runs (tenant_id, status)
    WHERE status IN ('queued', 'running');

CREATE TABLE task_attempts (
    tenant_id uuid NOT NULL,
    task_run_id uuid NOT NULL,
    attempt integer NOT NULL,
    run_id uuid NOT NULL,
    status varchar(20) NOT NULL,
    worker varchar(200),
    started_at timestamptz,
    finished_at timestamptz,
    exit_code integer,
    error text,
    reason varchar(30),
    output jsonb,
    PRIMARY KEY (tenant_id, task_run_id, attempt),
    FOREIGN KEY (tenant_id, task_run_id) REFERENCES task_runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_task_attempts_run ON task_attempts (tenant_id, run_id);

CREATE TABLE task_logs (
    tenant_id uuid NOT NULL,
    task_run_id uuid NOT NULL,
    attempt integer NOT NULL,
    seq bigint NOT NULL,
    logged_at timestamptz NOT NULL,
    stream varchar(10) NOT NULL,
    line text NOT NULL,
    PRIMARY KEY (tenant_id, task_run_id, attempt, seq),
    FOREIGN KEY (tenant_id, task_run_id) REFERENCES task_runs (tenant_id, id) ON DELETE CASCADE
)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"""CREATE POLICY tenant_isolation ON {table}
                USING (tenant_id = {CURRENT_TENANT})
                WITH CHECK (tenant_id = {CURRENT_TENANT})"""
        )


def downgrade() -> None:
    op.execute("DROP TABLE task_logs, task_attempts, task_runs, runs, job_versions, jobs")
    op.execute("ALTER TABLE tenants DROP COLUMN max_concurrent_tasks, DROP COLUMN weight")

"""GitOps and templates: ``jobs.managed_by`` (the Git source that owns a job) and tenant
job templates.

Revision ID: 0009_gitops
Revises: 0008_worker_credentials
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009_gitops"
down_revision = "0008_worker_credentials"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = """
ALTER TABLE jobs ADD COLUMN managed_by varchar(100);
CREATE INDEX ix_jobs_managed_by ON jobs (tenant_id, managed_by)
    WHERE managed_by IS NOT NULL AND deleted_at IS NULL;

CREATE TABLE job_templates (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    name varchar(100) NOT NULL,
    title varchar(200) NOT NULL,
    description text,
    parameters jsonb NOT NULL,
    spec jsonb NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ux_job_templates_name ON job_templates (tenant_id, name)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)
    op.execute("ALTER TABLE job_templates ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE job_templates FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON job_templates
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE job_templates")
    op.execute("DROP INDEX ix_jobs_managed_by")
    op.execute("ALTER TABLE jobs DROP COLUMN managed_by")

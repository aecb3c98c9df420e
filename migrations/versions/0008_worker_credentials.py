"""Worker credentials for tenant-hosted workers (one Redis ACL user each).

Revision ID: 0008_worker_credentials
Revises: 0007_secrets
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008_worker_credentials"
down_revision = "0007_secrets"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = """
CREATE TABLE worker_credentials (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id uuid NOT NULL,
    name varchar(100) NOT NULL,
    queue varchar(63) NOT NULL,
    redis_user varchar(64) NOT NULL,
    secret_hash varchar(64) NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ux_worker_credentials_user ON worker_credentials (tenant_id, redis_user);
CREATE INDEX ix_worker_credentials_active ON worker_credentials (tenant_id, queue)
    WHERE revoked_at IS NULL
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)
    op.execute("ALTER TABLE worker_credentials ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE worker_credentials FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON worker_credentials
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE worker_credentials")

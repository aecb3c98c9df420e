"""Tenant secrets: names and metadata in clear, values envelope-encrypted.

Revision ID: 0007_secrets
Revises: 0006_platform_grants
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007_secrets"
down_revision = "0006_platform_grants"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = """
CREATE TABLE secrets (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    name varchar(64) NOT NULL CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,63}$'),
    description varchar(500) NOT NULL DEFAULT '',
    value_ciphertext bytea NOT NULL,
    value_nonce bytea NOT NULL,
    wrapped_key bytea NOT NULL,
    wrapped_key_nonce bytea NOT NULL,
    key_id varchar(64) NOT NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT uq_secrets_tenant_name UNIQUE (tenant_id, name)
)
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute("ALTER TABLE secrets ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE secrets FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON secrets
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE secrets")

"""Foundation: tenants, users, memberships, tokens, audit events, row-level security.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

# Tenant-owned tables: RLS enabled and forced (the owner is bound too), one policy each.
TENANT_TABLES = ("memberships", "refresh_tokens", "api_tokens", "audit_events")

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"

SCHEMA = """
CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    slug varchar(63) NOT NULL UNIQUE,
    name varchar(200) NOT NULL,
    plan varchar(20) NOT NULL DEFAULT 'free',
    status varchar(20) NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email varchar(320) NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash varchar(255),
    is_superuser boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

CREATE TABLE memberships (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role varchar(20) NOT NULL
        CHECK (role IN ('owner', 'admin', 'editor', 'operator', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE refresh_tokens (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id uuid NOT NULL,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id uuid NOT NULL,
    token_hash varchar(64) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash)
);
CREATE INDEX ix_refresh_tokens_family ON refresh_tokens (tenant_id, family_id);
CREATE INDEX ix_refresh_tokens_user ON refresh_tokens (tenant_id, user_id);

CREATE TABLE api_tokens (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id uuid NOT NULL,
    name varchar(100) NOT NULL,
    role varchar(20) NOT NULL
        CHECK (role IN ('owner', 'admin', 'editor', 'operator', 'viewer')),
    prefix varchar(16) NOT NULL,
    token_hash varchar(64) NOT NULL,
    created_by uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash)
);
CREATE INDEX ix_api_tokens_created_by ON api_tokens (tenant_id, created_by);

CREATE TABLE audit_events (
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_type varchar(20) NOT NULL,
    actor_id varchar(64),
    actor_label varchar(320),
    action varchar(100) NOT NULL,
    target_type varchar(50),
    target_id varchar(64),
    outcome varchar(20) NOT NULL,
    ip varchar(64),
    user_agent varchar(512),
    request_id varchar(64),
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash varchar(64) NOT NULL,
    hash varchar(64) NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX ix_audit_events_action ON audit_events (tenant_id, action, seq);
CREATE INDEX ix_audit_events_actor ON audit_events (tenant_id, actor_id, seq);
CREATE INDEX ix_audit_events_time ON audit_events (tenant_id, occurred_at);
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        if table == "memberships":
            # A user logging in (no tenant chosen yet) may read their own memberships.
            op.execute(
                f"""CREATE POLICY tenant_isolation ON memberships
                    USING (tenant_id = {CURRENT_TENANT} OR user_id = {CURRENT_USER_ID})
                    WITH CHECK (tenant_id = {CURRENT_TENANT})"""
            )
        else:
            op.execute(
                f"""CREATE POLICY tenant_isolation ON {table}
                    USING (tenant_id = {CURRENT_TENANT})
                    WITH CHECK (tenant_id = {CURRENT_TENANT})"""
            )


def downgrade() -> None:
    op.execute("DROP TABLE audit_events, api_tokens, refresh_tokens, memberships, users, tenants")

"""Plans as data: the ``plans`` catalogue (seeded from ``backend/plans/catalog.py``),
``tenants.plan`` must name one of them; the old ``pro`` plan becomes ``team``. Metering:
``usage_daily`` (tenant-owned) and the two indexes its rollup reads by (task runs by
finish, log lines by time; the same index will serve log retention). Stripe:
``billing_accounts`` (a tenant's customer and subscription state) and ``stripe_events``
(the webhook's ledger), platform tables like ``tenants``: webhooks name a customer, not a
tenant. Accounts: ``users.email_verified_at`` and ``account_tokens`` (mailed single-use
tokens, hashed; a platform table: redeemed by someone not logged in).

The runtime role gets DML on ``plans`` (platform administrators edit it through the API)
and UPDATE of ``tenants.plan`` (``backend/core/schema.py``).

Revision ID: 0012_plans
Revises: 0011_hot_updates
Create Date: 2026-12-06
"""

from alembic import op
from sqlalchemy import text

revision = "0012_plans"
down_revision = "0011_hot_updates"
branch_labels = None
depends_on = None

# The seed as it was when this migration was written (the catalogue may change later;
# a migration's effect must not).
SEED: dict[str, tuple[str, int, dict[str, int | None]]] = {
    "free": (
        "Free",
        0,
        {
            "max_concurrent_tasks": 5,
            "weight": 1,
            "runs_per_month": 1_000,
            "task_seconds_per_month": 36_000,
            "members": 3,
            "scheduled_jobs": 5,
            "api_requests_per_minute": 120,
            "log_retention_days": 7,
        },
    ),
    "team": (
        "Team",
        1,
        {
            "max_concurrent_tasks": 50,
            "weight": 2,
            "runs_per_month": 50_000,
            "task_seconds_per_month": 1_800_000,
            "members": 25,
            "scheduled_jobs": 100,
            "api_requests_per_minute": 1_200,
            "log_retention_days": 30,
        },
    ),
    "business": (
        "Business",
        2,
        {
            "max_concurrent_tasks": 200,
            "weight": 4,
            "runs_per_month": 500_000,
            "task_seconds_per_month": 18_000_000,
            "members": 200,
            "scheduled_jobs": 1_000,
            "api_requests_per_minute": 6_000,
            "log_retention_days": 90,
        },
    ),
    "enterprise": (
        "Enterprise",
        3,
        {
            "max_concurrent_tasks": 1_000,
            "weight": 8,
            "runs_per_month": None,
            "task_seconds_per_month": None,
            "members": None,
            "scheduled_jobs": None,
            "api_requests_per_minute": 30_000,
            "log_retention_days": 365,
        },
    ),
}

SCHEMA = """
CREATE TABLE plans (
    name varchar(20) PRIMARY KEY,
    title varchar(100) NOT NULL,
    position integer NOT NULL DEFAULT 0,
    max_concurrent_tasks integer,
    weight integer,
    runs_per_month bigint,
    task_seconds_per_month bigint,
    members integer,
    scheduled_jobs integer,
    api_requests_per_minute integer,
    log_retention_days integer,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


USAGE = """
CREATE TABLE usage_daily (
    tenant_id uuid NOT NULL,
    day date NOT NULL,
    runs bigint NOT NULL DEFAULT 0,
    task_seconds bigint NOT NULL DEFAULT 0,
    log_bytes bigint NOT NULL DEFAULT 0,
    api_requests bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);
CREATE INDEX ix_task_runs_finished ON task_runs (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX ix_task_logs_logged ON task_logs (tenant_id, logged_at);
CREATE TABLE billing_accounts (
    tenant uuid PRIMARY KEY REFERENCES tenants (id),
    customer_id varchar(255) UNIQUE,
    subscription_id varchar(255),
    status varchar(30) NOT NULL DEFAULT 'none',
    past_due_since timestamptz,
    suspended_by_billing boolean NOT NULL DEFAULT false,
    last_event_at bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
CREATE TABLE account_tokens (
    id uuid PRIMARY KEY,
    purpose varchar(20) NOT NULL,
    token_hash varchar(128) NOT NULL UNIQUE,
    email varchar(320) NOT NULL,
    user_id uuid REFERENCES users (id),
    tenant uuid REFERENCES tenants (id),
    role varchar(20),
    invited_by uuid,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_account_tokens_invitations ON account_tokens (tenant, created_at)
    WHERE purpose = 'invitation';
CREATE TABLE stripe_events (
    id varchar(255) PRIMARY KEY,
    type varchar(100) NOT NULL,
    created bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(SCHEMA)
    # asyncpg runs one statement per call.
    for statement in USAGE.split(";\n"):
        if statement.strip():
            op.execute(statement)
    op.execute("ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE usage_daily FORCE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY tenant_isolation ON usage_daily
            USING (tenant_id = {CURRENT_TENANT})
            WITH CHECK (tenant_id = {CURRENT_TENANT})"""
    )
    insert = text(
        "INSERT INTO plans (name, title, position, max_concurrent_tasks, weight, runs_per_month,"
        " task_seconds_per_month, members, scheduled_jobs, api_requests_per_minute,"
        " log_retention_days) VALUES (:name, :title, :position, :max_concurrent_tasks, :weight,"
        " :runs_per_month, :task_seconds_per_month, :members, :scheduled_jobs,"
        " :api_requests_per_minute, :log_retention_days)"
    )
    for name, (title, position, limits) in SEED.items():
        op.get_bind().execute(
            insert, {"name": name, "title": title, "position": position, **limits}
        )
    op.execute("UPDATE tenants SET plan = 'team' WHERE plan = 'pro'")
    # A plan name no catalogue row holds (set by hand before plans were data) gets a row
    # of its own with no limits: nothing an installation relied on is refused afterwards.
    op.execute(
        "INSERT INTO plans (name, title) SELECT DISTINCT plan, plan FROM tenants"
        " WHERE plan NOT IN (SELECT name FROM plans)"
    )
    op.execute(
        "ALTER TABLE tenants ADD CONSTRAINT fk_tenants_plan FOREIGN KEY (plan)"
        " REFERENCES plans (name) ON UPDATE CASCADE"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_task_logs_logged, ix_task_runs_finished")
    op.execute("DROP TABLE usage_daily, billing_accounts, stripe_events, account_tokens")
    op.execute("ALTER TABLE users DROP COLUMN email_verified_at")
    op.execute("ALTER TABLE tenants DROP CONSTRAINT fk_tenants_plan")
    op.execute("UPDATE tenants SET plan = 'pro' WHERE plan = 'team'")
    op.execute("DROP TABLE plans")

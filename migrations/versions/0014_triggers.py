"""Event triggers: inbound webhook endpoints of jobs and the record of their deliveries;
the outbox of finished runs that job-to-job triggers and notifications consume;
notification channels, rules and the notification log; SLA misses.

Revision ID: 0014_triggers
Revises: 0013_meter_reports
Create Date: 2026-12-06
"""

from alembic import op

revision = "0014_triggers"
down_revision: str | None = "0013_meter_reports"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

SCHEMA = [
    """
    CREATE TABLE webhook_endpoints (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        job_id uuid NOT NULL,
        name varchar(100) NOT NULL,
        token_hash varchar(64) NOT NULL,
        token_prefix varchar(80) NOT NULL,
        signature varchar(10) NOT NULL DEFAULT 'none'
            CHECK (signature IN ('none', 'github', 'stripe')),
        secret_name varchar(64),
        tolerance_seconds integer NOT NULL DEFAULT 300,
        mapping jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_by uuid REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id),
        FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id) ON DELETE CASCADE,
        CONSTRAINT uq_webhook_endpoints_token UNIQUE (tenant_id, token_hash)
    )
    """,
    "CREATE INDEX ix_webhook_endpoints_job ON webhook_endpoints (tenant_id, job_id)",
    """
    CREATE TABLE webhook_deliveries (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        endpoint_id uuid NOT NULL,
        job_id uuid NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        outcome varchar(10) NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'refused')),
        reason varchar(300),
        status_code integer NOT NULL,
        run_id uuid,
        idempotency_key varchar(200),
        signature_digest varchar(64),
        body_bytes integer NOT NULL DEFAULT 0,
        source_ip varchar(64),
        PRIMARY KEY (tenant_id, id)
    )
    """,
    "CREATE INDEX ix_webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id)",
    "CREATE INDEX ix_webhook_deliveries_job ON webhook_deliveries (tenant_id, job_id, id)",
    # An accepted signature cannot be accepted again (replay), even by concurrent requests.
    """
    CREATE UNIQUE INDEX uq_webhook_deliveries_signature
        ON webhook_deliveries (tenant_id, endpoint_id, signature_digest)
        WHERE signature_digest IS NOT NULL
    """,
]
SCHEMA.append(
    # Runs that reached a final state, written in the transaction that finished them and
    # consumed by the reactor loop beside the engine (job-to-job triggers).
    """
    CREATE TABLE run_finish_outbox (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        run_id uuid NOT NULL,
        job_id uuid NOT NULL,
        status varchar(20) NOT NULL,
        reason varchar(300),
        finished_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )
    """
)
SCHEMA += [
    # Notifications: channels (secrets by name only), rules, and the log that is also the
    # sender's queue.
    """
    CREATE TABLE notification_channels (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        name varchar(100) NOT NULL,
        kind varchar(10) NOT NULL CHECK (kind IN ('email', 'slack', 'webhook')),
        config jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_by uuid REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id)
    )
    """,
    """
    CREATE TABLE notification_rules (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        channel_id uuid NOT NULL,
        job_id uuid,
        events jsonb NOT NULL,
        created_by uuid REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id),
        FOREIGN KEY (tenant_id, channel_id)
            REFERENCES notification_channels (tenant_id, id) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX ix_notification_rules_job ON notification_rules (tenant_id, job_id)",
    """
    CREATE TABLE notification_deliveries (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        channel_id uuid NOT NULL,
        rule_id uuid,
        job_id uuid,
        run_id uuid,
        event varchar(30) NOT NULL,
        status varchar(10) NOT NULL
            CHECK (status IN ('pending', 'sent', 'failed', 'throttled')),
        attempts integer NOT NULL DEFAULT 0,
        next_at timestamptz NOT NULL DEFAULT now(),
        payload jsonb NOT NULL DEFAULT '{}'::jsonb,
        response_code integer,
        response_body varchar(1000),
        error varchar(500),
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz,
        PRIMARY KEY (tenant_id, id)
    )
    """,
    # One notification per channel, run and event, however many rules match or replays.
    """
    CREATE UNIQUE INDEX uq_notification_deliveries_run
        ON notification_deliveries (tenant_id, channel_id, run_id, event)
        WHERE run_id IS NOT NULL
    """,
    """
    CREATE INDEX ix_notification_deliveries_due ON notification_deliveries (tenant_id, next_at)
        WHERE status = 'pending'
    """,
    """
    CREATE INDEX ix_notification_deliveries_recent
        ON notification_deliveries (tenant_id, channel_id, job_id, event, created_at)
    """,
]
SCHEMA.append(
    """
    CREATE TABLE sla_misses (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        run_id uuid NOT NULL,
        job_id uuid NOT NULL,
        kind varchar(20) NOT NULL CHECK (kind IN ('max_duration', 'finish_by')),
        deadline_at timestamptz NOT NULL,
        detected_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, run_id)
    )
    """
)
TABLES = (
    "webhook_endpoints",
    "webhook_deliveries",
    "run_finish_outbox",
    "notification_channels",
    "notification_rules",
    "notification_deliveries",
    "sla_misses",
)


def upgrade() -> None:
    for statement in SCHEMA:
        op.execute(statement)
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"""CREATE POLICY tenant_isolation ON {table}
                USING (tenant_id = {CURRENT_TENANT})
                WITH CHECK (tenant_id = {CURRENT_TENANT})"""
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")

"""The reactor's sweep asks which tenants have work instead of visiting every tenant.

Its sweep (every ``BATON_TRIGGER_SWEEP_SECONDS``) used to take every tenant in turn, three
transactions each (the run-finished outbox, SLA checks, notifications to send): with a
few thousand tenants that is thousands of transactions every few seconds, nearly all
finding nothing, and a stop had to wait for the round to end. ``reactor_due_tenants()``
answers in one call: the tenants with rows in either outbox, a notification due, or a
job whose current version has an SLA. Row-level security is forced on those tables, for
their owner too, so it looks at one tenant at a time (index probes), scoped as a request
would be, and restores the caller's scope - as ``worker_users_to_remove()`` does.

Revision ID: 0021_reactor_due_tenants
Revises: 0020_platform_admin_guard
Create Date: 2026-12-06
"""

from alembic import op

revision = "0021_reactor_due_tenants"
down_revision = "0020_platform_admin_guard"
branch_labels = None
depends_on = None

DUE = """CREATE FUNCTION reactor_due_tenants() RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
    DECLARE
        t uuid;
        caller text := current_setting('app.tenant_id', true);
    BEGIN
        FOR t IN SELECT tenants.id FROM tenants ORDER BY tenants.id LOOP
            PERFORM set_config('app.tenant_id', t::text, true);
            IF EXISTS (SELECT 1 FROM run_finish_outbox o WHERE o.tenant_id = t)
               OR EXISTS (SELECT 1 FROM run_refusal_outbox o WHERE o.tenant_id = t)
               OR EXISTS (SELECT 1 FROM notification_deliveries d
                          WHERE d.tenant_id = t AND d.status = 'pending'
                            AND d.next_at <= now())
               OR EXISTS (SELECT 1 FROM jobs j JOIN job_versions v
                            ON v.tenant_id = j.tenant_id AND v.job_id = j.id
                           AND v.version = j.current_version
                          WHERE j.tenant_id = t AND j.deleted_at IS NULL AND v.spec ? 'sla')
            THEN
                RETURN NEXT t;
            END IF;
        END LOOP;
        PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
    END
    $$"""


def upgrade() -> None:
    op.execute(DUE)
    op.execute("REVOKE ALL ON FUNCTION reactor_due_tenants() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION reactor_due_tenants()")

"""Audit sealing: events are appended without a lock and chained off the request path.

``audit_pending`` takes each event as its transaction writes it (a global sequence
orders them; no per-tenant lock, no chain-head read). A sealer moves a tenant's
committed pending events, in order, into the hash chain ``audit_events`` (gap-free
``seq``, ``prev_hash``, ``hash`` as before), recording which pending row each sealed row
came from (``pending_id``), and only then releases the pending rows through
``audit_release_sealed``: a SECURITY DEFINER function that deletes a pending row only when
a sealed row with the same content exists. The runtime role itself may still only INSERT
and SELECT both tables, so it can neither edit nor drop an event, sealed or not.

Revision ID: 0010_audit_sealing
Revises: 0009_gitops
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010_audit_sealing"
down_revision = "0009_gitops"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

CONTENT = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
)

SAME_CONTENT = " AND ".join(f"e.{c} IS NOT DISTINCT FROM p.{c}" for c in CONTENT)

STATEMENTS = [
    """CREATE TABLE audit_pending (
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        id bigserial NOT NULL,
        event_id uuid NOT NULL,
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
        PRIMARY KEY (tenant_id, id)
    )""",
    "ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY",
    f"""CREATE POLICY tenant_isolation ON audit_pending
        USING (tenant_id = {CURRENT_TENANT})
        WITH CHECK (tenant_id = {CURRENT_TENANT})""",
    # The sealer's sweep (after a crash left events unsealed) asks, tenant by tenant in one
    # statement, whether any are pending: each check scopes the transaction to its tenant
    # first, so row-level security applies to it as to any other read (the caller rolls
    # back). SECURITY INVOKER: it can see nothing its caller could not.
    """CREATE FUNCTION audit_has_pending(p_tenant uuid) RETURNS boolean
        LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
        BEGIN
            PERFORM set_config('app.tenant_id', p_tenant::text, true);
            RETURN EXISTS (SELECT 1 FROM audit_pending WHERE tenant_id = p_tenant);
        END
        $$""",
    "ALTER TABLE audit_events ADD COLUMN pending_id bigint",
    """CREATE UNIQUE INDEX ux_audit_events_pending ON audit_events (tenant_id, pending_id)
        WHERE pending_id IS NOT NULL""",
    f"""CREATE FUNCTION audit_release_sealed(p_tenant uuid, p_ids bigint[]) RETURNS integer
        LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
        WITH released AS (
            DELETE FROM audit_pending p USING audit_events e
            WHERE p.tenant_id = p_tenant AND p.id = ANY(p_ids)
              AND e.tenant_id = p.tenant_id AND e.pending_id = p.id AND e.id = p.event_id
              AND {SAME_CONTENT}
            RETURNING 1)
        SELECT count(*)::integer FROM released
        $$""",  # noqa: S608 - column names of this migration, no input
    "REVOKE ALL ON FUNCTION audit_release_sealed(uuid, bigint[]) FROM PUBLIC",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_release_sealed(uuid, bigint[])")
    op.execute("DROP FUNCTION audit_has_pending(uuid)")
    op.execute("DROP INDEX ux_audit_events_pending")
    op.execute("ALTER TABLE audit_events DROP COLUMN pending_id")
    op.execute("DROP TABLE audit_pending")

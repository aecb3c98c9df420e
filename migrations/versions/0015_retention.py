"""Retention: audit chain checkpoints, the cut function, an index for pruning ticks.

``audit_checkpoints`` records, per tenant, where the audit chain was cut by retention: the
first kept ``seq``, the hash of the event before it (the kept chain's starting
``prev_hash``), how many events went, and a signature (HMAC under a key derived from the
secrets key-encryption key, ``key_id`` naming it) over tenant, seq and hash, so that
``baton audit verify`` accepts a chain that starts after 1 only at a signed checkpoint.

``audit_cut`` is the one way to delete sealed audit events: a SECURITY DEFINER function
that, for one tenant, records the checkpoint and deletes the events before it in one
statement - and only events older than the given instant, and never the chain's head. The
runtime role still has no DELETE on ``audit_events``.

Revision ID: 0015_retention
Revises: 0014_triggers
Create Date: 2026-12-06
"""

from alembic import op

revision = "0015_retention"
down_revision = "0014_triggers"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

STATEMENTS = [
    """CREATE TABLE audit_checkpoints (
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        prev_hash varchar(64) NOT NULL,
        events_removed bigint NOT NULL,
        cut_before timestamptz NOT NULL,
        key_id varchar(64) NOT NULL,
        signature varchar(64) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, seq)
    )""",
    "ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY",
    f"""CREATE POLICY tenant_isolation ON audit_checkpoints
        USING (tenant_id = {CURRENT_TENANT})
        WITH CHECK (tenant_id = {CURRENT_TENANT})""",
    # Cut the tenant's chain before p_seq: the event p_seq - 1 must exist and be older than
    # p_before, p_seq must not be past the head. SECURITY DEFINER (the runtime role has no
    # DELETE on audit_events), scoped to the tenant the transaction is set to.
    f"""CREATE FUNCTION audit_cut(
            p_tenant uuid, p_seq bigint, p_before timestamptz, p_key_id text, p_signature text
        ) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
            last_cut audit_events%ROWTYPE;
            removed bigint;
        BEGIN
            IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                RAISE EXCEPTION 'audit_cut: not the transaction''s tenant';
            END IF;
            SELECT * INTO last_cut FROM audit_events
             WHERE tenant_id = p_tenant AND seq = p_seq - 1 AND occurred_at < p_before;
            IF NOT FOUND OR NOT EXISTS (
                SELECT 1 FROM audit_events WHERE tenant_id = p_tenant AND seq = p_seq
            ) THEN
                RETURN 0;
            END IF;
            INSERT INTO audit_checkpoints
                (tenant_id, seq, prev_hash, events_removed, cut_before, key_id, signature)
            VALUES (p_tenant, p_seq, last_cut.hash, 0, p_before, p_key_id, p_signature);
            DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq < p_seq;
            GET DIAGNOSTICS removed = ROW_COUNT;
            UPDATE audit_checkpoints SET events_removed = removed
             WHERE tenant_id = p_tenant AND seq = p_seq;
            RETURN removed;
        END
        $$""",  # noqa: S608 - a constant of this migration, no input
    "REVOKE ALL ON FUNCTION audit_cut(uuid, bigint, timestamptz, text, text) FROM PUBLIC",
    # Ticks are pruned by age per tenant; the key (tenant, job, instant) cannot serve that.
    "CREATE INDEX ix_schedule_ticks_age ON schedule_ticks (tenant_id, scheduled_for)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX ix_schedule_ticks_age")
    op.execute("DROP FUNCTION audit_cut(uuid, bigint, timestamptz, text, text)")
    op.execute("DROP TABLE audit_checkpoints")

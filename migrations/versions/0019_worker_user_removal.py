"""Worker credentials remember when their Redis user was confirmed gone.

``redis_removed_at`` is set once ``ACL DELUSER`` has succeeded for a revoked or expired
credential. Until then the engine's sweep keeps removing the user, so a Redis error at
revocation time cannot leave a revoked credential's user alive. Existing revoked or
expired rows start unconfirmed: the first sweep removes their users (again) and marks them.

``worker_users_to_remove()`` answers the sweep's question across tenants in one
statement (a SECURITY DEFINER function: the runtime role sees one tenant at a time); the
sweep then marks each removal inside that tenant's own scoped transaction.

Revision ID: 0019_worker_user_removal
Revises: 0018_fires_ahead
Create Date: 2026-12-06
"""

from alembic import op

revision = "0019_worker_user_removal"
down_revision = "0018_fires_ahead"
branch_labels = None
depends_on = None


# Row-level security is forced on worker_credentials, for its owner too: the function looks
# at one tenant at a time, scoped as a request would be, and restores the caller's scope.
TO_REMOVE = """CREATE FUNCTION worker_users_to_remove()
    RETURNS TABLE (tenant_id uuid, id uuid, redis_user varchar)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
    DECLARE
        t uuid;
        caller text := current_setting('app.tenant_id', true);
    BEGIN
        FOR t IN SELECT tenants.id FROM tenants ORDER BY tenants.id LOOP
            PERFORM set_config('app.tenant_id', t::text, true);
            RETURN QUERY
                SELECT c.tenant_id, c.id, c.redis_user FROM worker_credentials c
                WHERE c.tenant_id = t AND c.redis_removed_at IS NULL
                  AND (c.revoked_at IS NOT NULL OR c.expires_at <= now());
        END LOOP;
        PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
    END
    $$"""


def upgrade() -> None:
    op.execute("ALTER TABLE worker_credentials ADD COLUMN redis_removed_at timestamptz")
    # The sweep's question: which ended (or expiring) credentials may still have a user?
    op.execute(
        """CREATE INDEX ix_worker_credentials_unremoved ON worker_credentials (tenant_id, id)
           WHERE redis_removed_at IS NULL
             AND (revoked_at IS NOT NULL OR expires_at IS NOT NULL)"""
    )
    op.execute(TO_REMOVE)
    op.execute("REVOKE ALL ON FUNCTION worker_users_to_remove() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION worker_users_to_remove()")
    op.execute("DROP INDEX ix_worker_credentials_unremoved")
    op.execute("ALTER TABLE worker_credentials DROP COLUMN redis_removed_at")

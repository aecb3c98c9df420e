"""A platform administrator's password changes only as the owner role.

The runtime role may update ``users.password_hash`` (password reset) on any row: ``users``
has no tenant scope. A compromised API process could therefore have set a platform
administrator's password and logged in as one. A trigger now refuses that column's
change on a superuser's row unless the
current role owns ``users`` (the owner role: ``baton admin set-password``) or is a
database superuser. The API refuses the same before it tries (``accounts.service``).

Revision ID: 0020_platform_admin_guard
Revises: 0019_worker_user_removal
Create Date: 2026-12-06
"""

from alembic import op

revision = "0020_platform_admin_guard"
down_revision = "0019_worker_user_removal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION users_guard_platform_admins() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.is_superuser
             AND NEW.password_hash IS DISTINCT FROM OLD.password_hash
             AND NOT pg_has_role(
               current_user,
               (SELECT relowner FROM pg_class WHERE oid = 'users'::regclass),
               'MEMBER')
          THEN
            RAISE EXCEPTION 'a platform administrator''s password is set by the owner role'
              USING ERRCODE = 'insufficient_privilege';
          END IF;
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_guard_platform_admins
        BEFORE UPDATE OF password_hash ON users
        FOR EACH ROW EXECUTE FUNCTION users_guard_platform_admins()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER users_guard_platform_admins ON users")
    op.execute("DROP FUNCTION users_guard_platform_admins()")

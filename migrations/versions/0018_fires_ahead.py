"""Fires prepared ahead of their instant.

``schedules.planned_for``: the instant up to which the scheduler has prepared the next fire
(its run inserted ``planned``, its tick recorded ``planned``); a run may now be
``planned`` (invisible to admission and to the concurrency policy until its instant) and
a tick ``planned`` or ``superseded`` (an edit, a pause or a deletion dropped the prepared
fire before its instant). ``schedule_ticks`` is partitioned: its outcome check lives on
every partition, so each one's is replaced (the weekly partitions created from now on
copy the parent's).

Revision ID: 0018_fires_ahead
Revises: 0017_run_refusal_outbox
Create Date: 2026-12-06
"""

from alembic import op

revision = "0018_fires_ahead"
down_revision = "0017_run_refusal_outbox"
branch_labels = None
depends_on = None

RUN_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'cancelled'{extra})"
PLANNED = ", 'planned'"
OUTCOMES = "('fired', 'skipped', 'missed'{extra})"

# The parent's check first (a partition's inherited copy goes with it), then what is left
# on each partition (a copy it had of its own when it was attached).
_DROP_OUTCOME_CHECK = """
DO $$
DECLARE part text;
BEGIN
    ALTER TABLE schedule_ticks DROP CONSTRAINT IF EXISTS schedule_ticks_outcome_check;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'schedule_ticks'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS schedule_ticks_outcome_check',
                       part);
    END LOOP;
END
$$"""


def _outcome_check(extra: str) -> None:
    op.execute(_DROP_OUTCOME_CHECK)
    op.execute(
        "ALTER TABLE schedule_ticks ADD CONSTRAINT schedule_ticks_outcome_check"
        f" CHECK (outcome IN {OUTCOMES.format(extra=extra)})"
    )


def upgrade() -> None:
    op.execute("ALTER TABLE schedules ADD COLUMN planned_for timestamptz")
    op.execute("ALTER TABLE runs DROP CONSTRAINT runs_status_check")
    op.execute(
        "ALTER TABLE runs ADD CONSTRAINT runs_status_check"
        f" CHECK (status IN {RUN_STATUSES.format(extra=PLANNED)})"
    )
    _outcome_check(", 'planned', 'superseded'")


def downgrade() -> None:
    op.execute("DELETE FROM runs WHERE status = 'planned'")
    op.execute("UPDATE schedule_ticks SET outcome = 'skipped' WHERE outcome = 'superseded'")
    op.execute("DELETE FROM schedule_ticks WHERE outcome = 'planned'")
    _outcome_check("")
    op.execute("ALTER TABLE runs DROP CONSTRAINT runs_status_check")
    op.execute(
        f"ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN {RUN_STATUSES.format(extra='')})"
    )
    op.execute("ALTER TABLE schedules DROP COLUMN planned_for")

"""Room on each page for HOT updates of the execution tables (fillfactor 80).

An UPDATE can be HOT (heap-only: no new index entries, the old version pruned in place)
only when no indexed column changes *and* the new version fits on the same page. The
second condition is what this migration provides: tables filled to 100 % leave no room,
so every update moves the row to another page and writes every index again.

Which updates of the hot path can then be HOT, on PostgreSQL 15:

* ``task_attempts``: every update (started, finished) - its indexes cover only the key and
  ``run_id``, which never change.
* ``task_runs``: heartbeats (``heartbeat_at`` is in no index) and the output/error of a
  settled row. A status change never is: ``status``, ``ready_at`` and ``dispatched_at`` are
  in the predicates of the partial indexes over active rows (``ix_task_runs_ready``,
  ``ix_task_runs_ready_by_run``, ``ix_task_runs_active``) that admission, the sweep and
  recovery read. Those indexes are partial already, so a finished task leaves them and
  they stay as small as the work in flight.
* ``runs``: updates that leave ``status`` alone.

Only pages written from now on keep the room (existing pages fill up as they are), and
the setting takes a lock that lets reads and writes go on.

Revision ID: 0011_hot_updates
Revises: 0010_audit_sealing
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011_hot_updates"
down_revision = "0010_audit_sealing"
branch_labels = None
depends_on = None

TABLES = ("task_runs", "task_attempts", "runs")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")

"""DAG engine: fan-out children and the explanation of every decision.

Revision ID: 0003_dag_engine
Revises: 0002_jobs_and_runs
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003_dag_engine"
down_revision = "0002_jobs_and_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # parent_id/map_index/item: a for_each task's children ("name[i]") point at the group
    # task run they belong to and carry their item. explanation: why a task was skipped,
    # upstream_failed or cancelled, in words a user can act on.
    op.execute(
        "ALTER TABLE task_runs ADD COLUMN parent_id uuid, ADD COLUMN map_index integer, "
        "ADD COLUMN item jsonb, ADD COLUMN explanation text"
    )
    op.execute(
        "CREATE INDEX ix_task_runs_children ON task_runs (tenant_id, parent_id, map_index) "
        "WHERE parent_id IS NOT NULL"
    )
    # Admission walks the runs that have ready tasks (a skip scan) and takes a few of each.
    op.execute(
        "CREATE INDEX ix_task_runs_ready_by_run ON task_runs (tenant_id, run_id, ready_at) "
        "WHERE status = 'queued' AND dispatched_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_task_runs_children, ix_task_runs_ready_by_run")
    op.execute(
        "ALTER TABLE task_runs DROP COLUMN parent_id, DROP COLUMN map_index, DROP COLUMN item, "
        "DROP COLUMN explanation"
    )

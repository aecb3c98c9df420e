"""Admission takes each run's ready tasks in (ready_at, map_index) order: index exactly that.

Revision ID: 0004_admission_index
Revises: 0003_dag_engine
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004_admission_index"
down_revision = "0003_dag_engine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX ix_task_runs_ready_by_run")
    op.execute(
        "CREATE INDEX ix_task_runs_ready_by_run ON task_runs "
        "(tenant_id, run_id, ready_at, map_index) "
        "WHERE status = 'queued' AND dispatched_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_task_runs_ready_by_run")
    op.execute(
        "CREATE INDEX ix_task_runs_ready_by_run ON task_runs (tenant_id, run_id, ready_at) "
        "WHERE status = 'queued' AND dispatched_at IS NULL"
    )

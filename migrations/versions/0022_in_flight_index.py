"""Admission counts a tenant's tasks in flight, and each candidate run's, on an index of
exactly those rows; the queue tables' statistics are kept fresh by the engine.

A task is in flight from its dispatch (``dispatched_at`` set) until it finishes (status
leaves ``queued``/``running``). Admission asked for those rows through
``ix_task_runs_active`` (``tenant_id, status``), which also holds every queued task not yet
dispatched: with a backlog of 20,000 tasks, each claim read 20,000 rows to count the 1,000
in flight. This partial index holds only the rows in flight (at most the tenant's quota),
keyed by run so that the claim counts one run's share with one probe.

Those index probes are only chosen when the planner knows the table's size. A new
installation's ``task_runs`` has no statistics until autovacuum's first analyze
(``autovacuum_naptime``, a minute by default, and later still on a busy server): planned as
an empty table, the claim scanned the whole backlog on ``ix_task_runs_active`` for every
admission (measured: 137 ms a claim at 11,000 queued tasks, against 2 ms once analysed).
``refresh_queue_statistics()`` analyses the tables that change with every task (runs, task
runs, attempts, the run-finished outbox) once they have changed by 500 rows plus a tenth of
their size - autovacuum's own rule with a lower floor - and does nothing otherwise (one
look at the statistics views). The engine calls it from its sweep; replicas do not analyse
the same table at once (an advisory lock, tried). It runs as the tables' owner (security
definer), since the runtime role may not analyse them.

Revision ID: 0022_in_flight_index
Revises: 0021_reactor_due_tenants
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022_in_flight_index"
down_revision = "0021_reactor_due_tenants"
branch_labels = None
depends_on = None


REFRESH = """CREATE FUNCTION refresh_queue_statistics(
        floor bigint DEFAULT 500, fraction double precision DEFAULT 0.1
    ) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
    DECLARE
        stale text;
    BEGIN
        IF NOT pg_try_advisory_xact_lock(hashtextextended('baton:queue-statistics', 0)) THEN
            RETURN;
        END IF;
        FOR stale IN
            SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
             WHERE s.schemaname = 'public'
               AND s.relname IN ('runs', 'task_runs', 'task_attempts', 'run_finish_outbox')
               AND s.n_mod_since_analyze >= floor + fraction * greatest(c.reltuples, 0)
             ORDER BY s.relname
        LOOP
            EXECUTE format('ANALYZE %I', stale);
            RETURN NEXT stale;
        END LOOP;
    END
    $$"""


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_task_runs_in_flight ON task_runs (tenant_id, run_id) "
        "WHERE dispatched_at IS NOT NULL AND status IN ('queued', 'running')"
    )
    op.execute(REFRESH)
    op.execute(
        "REVOKE ALL ON FUNCTION refresh_queue_statistics(bigint, double precision) FROM PUBLIC"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION refresh_queue_statistics(bigint, double precision)")
    op.execute("DROP INDEX ix_task_runs_in_flight")

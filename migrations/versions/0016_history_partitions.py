"""Time-partitioned history: ``task_logs`` by ``logged_at``, ``schedule_ticks`` by
``scheduled_for``, one partition per UTC week (``<table>_pYYYYMMDD``, the Monday it
starts) and a ``<table>_default`` partition for instants no weekly partition covers.

Both tables are append-only and carry none of the hot path's keys (runs, task runs and
attempts are left alone: they are being rewritten, docs/architecture.md "Retention"), so
whole weeks can be dropped once they are past every tenant's retention instead of being
deleted row by row. ``task_logs``'s key gains ``logged_at`` (a partitioned table's unique
keys must hold the partition key); a line is still written once, since a replayed event
carries the same instant as the original. Existing rows are moved into their weeks.

The engine keeps partitions ahead of time and drops old ones through two SECURITY
DEFINER functions (the runtime role owns nothing and cannot create or drop tables):
``history_ensure_partitions(table, from, to)`` creates the missing weeks (moving rows that
had landed in the default partition), each with row-level security forced and the same
tenant policy as its parent; ``history_drop_partitions(table, before)`` drops the weeks
that end before ``before``. Row-level security is unchanged: the policy stays on the
parent, and each partition has its own copy for anyone reading it directly.

Revision ID: 0016_history_partitions
Revises: 0015_retention
Create Date: 2026-12-06
"""

from alembic import op

revision = "0016_history_partitions"
down_revision = "0015_retention"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
QUOTED_POLICY = POLICY.replace("'", "''")  # inside a string literal of the function

# table -> (partition column, primary key, extra statements after the key)
TABLES = {
    "task_logs": (
        "logged_at",
        "(tenant_id, task_run_id, attempt, seq, logged_at)",
        [
            "ALTER TABLE task_logs ADD FOREIGN KEY (tenant_id, task_run_id)"
            " REFERENCES task_runs (tenant_id, id) ON DELETE CASCADE",
            "CREATE INDEX ix_task_logs_logged ON task_logs (tenant_id, logged_at)",
        ],
    ),
    "schedule_ticks": (
        "scheduled_for",
        "(tenant_id, job_id, scheduled_for)",
        [
            "ALTER TABLE schedule_ticks ADD FOREIGN KEY (tenant_id, job_id)"
            " REFERENCES jobs (tenant_id, id) ON DELETE CASCADE",
            "CREATE INDEX ix_schedule_ticks_age ON schedule_ticks (tenant_id, scheduled_for)",
        ],
    ),
}

FUNCTIONS = [
    f"""CREATE FUNCTION history_ensure_partitions(
            p_table text, p_from timestamptz, p_to timestamptz
        ) RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
            key text;
            week date;
            lo timestamptz;
            hi timestamptz;
            part text;
            created integer := 0;
        BEGIN
            IF p_table = 'task_logs' THEN key := 'logged_at';
            ELSIF p_table = 'schedule_ticks' THEN key := 'scheduled_for';
            ELSE RAISE EXCEPTION 'not a partitioned history table: %', p_table;
            END IF;
            IF p_to - p_from > interval '520 weeks' THEN
                RAISE EXCEPTION 'history_ensure_partitions: range too long';
            END IF;
            week := date_trunc('week', p_from AT TIME ZONE 'UTC')::date;
            WHILE (week::timestamp AT TIME ZONE 'UTC') < p_to LOOP
                part := p_table || '_p' || to_char(week, 'YYYYMMDD');
                lo := week::timestamp AT TIME ZONE 'UTC';
                hi := (week + 7)::timestamp AT TIME ZONE 'UTC';
                IF to_regclass(part) IS NULL THEN
                    EXECUTE format(
                        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                        part, p_table);
                    -- Rows of this week that landed in the default partition move in first
                    -- (attaching checks that the default holds none of the week).
                    EXECUTE format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY',
                                   p_table || '_default');
                    EXECUTE format(
                        'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *)'
                        ' INSERT INTO %I SELECT * FROM moved',
                        p_table || '_default', key, lo, key, hi, part);
                    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY',
                                   p_table || '_default');
                    EXECUTE format(
                        'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                        p_table, part, lo, hi);
                    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
                    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', part);
                    EXECUTE format('CREATE POLICY tenant_isolation ON %I {QUOTED_POLICY}', part);
                    created := created + 1;
                END IF;
                week := week + 7;
            END LOOP;
            RETURN created;
        END
        $$""",  # noqa: S608 - constants of this migration, no input
    """CREATE FUNCTION history_drop_partitions(p_table text, p_before timestamptz)
        RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE
            part record;
            dropped integer := 0;
        BEGIN
            IF p_table NOT IN ('task_logs', 'schedule_ticks') THEN
                RAISE EXCEPTION 'not a partitioned history table: %', p_table;
            END IF;
            FOR part IN
                SELECT c.relname AS name FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                  JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname = p_table AND c.relname ~ ('^' || p_table || '_p[0-9]{8}$')
                 ORDER BY c.relname
            LOOP
                IF (to_date(right(part.name, 8), 'YYYYMMDD') + 7)::timestamp
                       AT TIME ZONE 'UTC' <= p_before THEN
                    EXECUTE format('DROP TABLE %I', part.name);
                    dropped := dropped + 1;
                END IF;
            END LOOP;
            RETURN dropped;
        END
        $$""",
    "REVOKE ALL ON FUNCTION history_ensure_partitions(text, timestamptz, timestamptz) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION history_drop_partitions(text, timestamptz) FROM PUBLIC",
]


def _policy(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON {table} {POLICY}")


def upgrade() -> None:
    for statement in FUNCTIONS:
        op.execute(statement)
    for table, (key, primary, extra) in TABLES.items():
        old = f"{table}_unpartitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        # The owner reads every tenant's rows to move them (forced RLS would hide them).
        op.execute(f"ALTER TABLE {old} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
        index = "ix_task_logs_logged" if table == "task_logs" else "ix_schedule_ticks_age"
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_unpartitioned")
        op.execute(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            f" PARTITION BY RANGE ({key})"
        )
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY {primary}")
        for statement in extra:
            op.execute(statement)
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        _policy(f"{table}_default")
        # The weeks the existing rows cover, and four ahead; then the rows move in (through
        # the parent, before its own policy is forced on the owner doing it).
        op.execute(
            f"SELECT history_ensure_partitions('{table}',"  # noqa: S608 - constants
            f" least(coalesce((SELECT min({key}) FROM {old}), now()), now()),"
            f" greatest(coalesce((SELECT max({key}) FROM {old}), now()), now())"
            " + interval '4 weeks')"
        )
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - constants
        op.execute(f"DROP TABLE {old}")
        _policy(table)


def downgrade() -> None:
    for table, (_key, _primary, extra) in TABLES.items():
        primary = (
            "(tenant_id, task_run_id, attempt, seq)"
            if table == "task_logs"
            else "(tenant_id, job_id, scheduled_for)"
        )
        old = f"{table}_partitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"ALTER TABLE {old} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
        index = "ix_task_logs_logged" if table == "task_logs" else "ix_schedule_ticks_age"
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_partitioned")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY {primary}")
        for statement in extra:
            op.execute(statement)
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - constants
        op.execute(f"DROP TABLE {old}")
        _policy(table)
    op.execute("DROP FUNCTION history_drop_partitions(text, timestamptz)")
    op.execute("DROP FUNCTION history_ensure_partitions(text, timestamptz, timestamptz)")

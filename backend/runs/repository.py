"""Queries on runs, task runs, attempts and logs - always inside one tenant."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Uuid, any_, bindparam, func, insert, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import driver_connection
from backend.core.repository import TenantScopedRepository
from backend.runs.models import Run, TaskAttempt, TaskLog, TaskRun
from kernel.dag.status import FINISHED_TASK, RunStatus, TaskStatus

ACTIVE_RUN = (RunStatus.queued, RunStatus.running)
UNFINISHED_TASK = tuple(s for s in TaskStatus if s not in FINISHED_TASK)


def any_id(column: Any, ids: Iterable[uuid.UUID]) -> ColumnElement[bool]:
    """``column = ANY($1::uuid[])``: one SQL text, and so one prepared statement, whatever
    the number of ids (``IN (...)`` makes a statement per list length, and batches of
    varying sizes would keep re-parsing them)."""
    return cast(
        "ColumnElement[bool]", column == any_(bindparam(None, list(ids), type_=ARRAY(Uuid())))
    )


class RunRepository(TenantScopedRepository[Run]):
    model = Run

    async def by_idempotency_keys(self, job_id: uuid.UUID, keys: Sequence[str]) -> dict[str, Run]:
        if not keys:
            return {}
        statement = self.select().where(
            col(Run.job_id) == job_id, col(Run.idempotency_key).in_(list(keys))
        )
        return {
            r.idempotency_key: r
            for r in (await self.session.exec(statement)).all()
            if r.idempotency_key
        }

    async def active_for_job(self, job_id: uuid.UUID) -> list[Run]:
        statement = self.select().where(col(Run.job_id) == job_id, col(Run.status).in_(ACTIVE_RUN))
        return list((await self.session.exec(statement)).all())

    async def by_ids(self, run_ids: Sequence[uuid.UUID], *, lock: bool = False) -> list[Run]:
        statement = self.select().where(any_id(col(Run.id), run_ids))
        if lock:
            statement = statement.with_for_update()
        return list((await self.session.exec(statement)).all())

    async def detail(
        self, run_id: uuid.UUID
    ) -> tuple[Run, list[tuple[TaskRun, list[TaskAttempt]]]] | None:
        """The run with its task runs and each one's attempts (in attempt order), read by one
        statement, so from one snapshot: two reads under READ COMMITTED could straddle an
        engine commit and show an attempt from after it beside its task row from before."""
        statement = (
            self.select()
            .add_columns(TaskRun, TaskAttempt)
            .where(col(Run.id) == run_id)
            .outerjoin(
                TaskRun,
                (col(TaskRun.tenant_id) == col(Run.tenant_id))
                & (col(TaskRun.run_id) == col(Run.id)),
            )
            .outerjoin(
                TaskAttempt,
                (col(TaskAttempt.tenant_id) == col(TaskRun.tenant_id))
                & (col(TaskAttempt.task_run_id) == col(TaskRun.id)),
            )
            .order_by(col(TaskRun.id), col(TaskAttempt.attempt))
        )
        rows = (await self.session.execute(statement)).all()
        if not rows:
            return None
        tasks: dict[uuid.UUID, tuple[TaskRun, list[TaskAttempt]]] = {}
        for _, task, attempt in rows:
            if task is None:
                continue
            entry = tasks.setdefault(task.id, (task, []))
            if attempt is not None:
                entry[1].append(attempt)
        return rows[0][0], list(tasks.values())

    async def page(
        self,
        *,
        limit: int,
        job_id: uuid.UUID | None,
        statuses: Sequence[str],
        before: tuple[datetime, uuid.UUID] | None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[Run]:
        statement = self.select()
        if job_id is not None:
            statement = statement.where(col(Run.job_id) == job_id)
        if statuses:
            statement = statement.where(col(Run.status).in_(list(statuses)))
        if created_after is not None:
            statement = statement.where(col(Run.created_at) >= created_after)
        if created_before is not None:
            statement = statement.where(col(Run.created_at) < created_before)
        if before is not None:
            created, run_id = before
            statement = statement.where(
                (col(Run.created_at) < created)
                | ((col(Run.created_at) == created) & (col(Run.id) < run_id))
            )
        statement = statement.order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit)
        return list((await self.session.exec(statement)).all())

    async def insert_new(self, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Insert runs; one whose idempotency key already exists (a concurrent request
        won it) is skipped. Returns the ids actually inserted."""
        if not rows:
            return set()
        statement = (
            pg_insert(Run)
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "job_id", "idempotency_key"],
                index_where=col(Run.idempotency_key).is_not(None),
            )
            .returning(col(Run.id))
        )
        result = await self.session.execute(statement, rows)
        return {row[0] for row in result.all()}

    async def update_many(self, rows: list[dict[str, Any]]) -> None:
        """Bulk UPDATE by primary key; every dict carries tenant_id, id and the same keys."""
        if rows:
            await self.session.execute(update(Run), rows)


# A trigger's whole write in one statement (one round trip): its runs, their task runs and
# (optionally) its audit event, each set-based from one JSON array. A run whose
# idempotency key a concurrent request took first is skipped with its tasks and counts
# for nothing in the audit event. ``output``/``item`` stay JSON null as the ORM wrote them.
def _columns(model: Any, alias: str, json_null: tuple[str, ...] = ()) -> tuple[str, str]:
    """The model's column list, and the same columns read from ``alias``."""
    names = [column.name for column in model.__table__.columns]
    values = [
        f"coalesce({alias}.{name}, 'null'::jsonb)" if name in json_null else f"{alias}.{name}"
        for name in names
    ]
    return ", ".join(names), ", ".join(values)


_RUN_COLUMNS, _RUN_VALUES = _columns(Run, "r")
_TASK_COLUMNS, _TASK_VALUES = _columns(TaskRun, "t", json_null=("output", "item"))
_AUDIT_COLUMNS = (
    "tenant_id, event_id, occurred_at, actor_type, actor_id, actor_label, action, "
    "target_type, target_id, outcome, ip, user_agent, request_id"
)
# $1 the runs, $2 their task runs, $3 the pending audit events (JSON arrays of rows), $4
# whether the audit event counts the runs inserted. Sent raw on the request's transaction
# (core.db.driver_connection): SQLAlchemy's statement machinery cost more than the trip.
_TRIGGER_INSERT = f"""
WITH new_runs AS (
    INSERT INTO runs ({_RUN_COLUMNS})
    SELECT {_RUN_VALUES} FROM jsonb_populate_recordset(NULL::runs, CAST($1::text AS jsonb)) AS r
    ON CONFLICT (tenant_id, job_id, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING id
), new_tasks AS (
    INSERT INTO task_runs ({_TASK_COLUMNS})
    SELECT {_TASK_VALUES}
    FROM jsonb_populate_recordset(NULL::task_runs, CAST($2::text AS jsonb)) AS t
    WHERE t.run_id IN (SELECT id FROM new_runs)
), new_audit AS (
    INSERT INTO audit_pending ({_AUDIT_COLUMNS}, details)
    SELECT {_AUDIT_COLUMNS},
        CASE WHEN $4::boolean
             THEN a.details || jsonb_build_object('count', (SELECT count(*) FROM new_runs))
             ELSE a.details END
    FROM jsonb_populate_recordset(NULL::audit_pending, CAST($3::text AS jsonb)) AS a
    WHERE EXISTS (SELECT 1 FROM new_runs)
)
SELECT id FROM new_runs
"""  # noqa: S608 - column names come from the models, values are bound parameters


async def insert_triggered(
    session: AsyncSession,
    runs: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    audit: dict[str, Any] | list[dict[str, Any]] | None,
    *,
    count_runs: bool = False,
) -> set[uuid.UUID]:
    """Insert a trigger's runs, task runs and pending audit event(s) in one statement; the
    ids of the runs inserted (the session must be scoped to their tenant).

    ``audit``: one event, or a list of them (the scheduler's one per fire).
    ``count_runs`` adds the number of runs inserted to the audit event's details.
    """
    audits = audit if isinstance(audit, list) else [audit] if audit is not None else []
    conn = await driver_connection(session)
    rows = await conn.fetch(_TRIGGER_INSERT, _json(runs), _json(tasks), _json(audits), count_runs)
    return {row[0] for row in rows}


def _json(rows: list[dict[str, Any]]) -> str:
    # datetimes and UUIDs as text PostgreSQL parses back exactly (isoformat keeps the zone).
    return json.dumps(rows, default=_encode, separators=(",", ":"))


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class TaskRunRepository(TenantScopedRepository[TaskRun]):
    model = TaskRun

    async def for_runs(self, run_ids: Sequence[uuid.UUID], *, lock: bool = False) -> list[TaskRun]:
        statement = self.select().where(col(TaskRun.run_id).in_(list(run_ids)))
        if lock:
            statement = statement.with_for_update()
        return list((await self.session.exec(statement)).all())

    async def by_ids(self, ids: Sequence[uuid.UUID]) -> list[TaskRun]:
        statement = self.select().where(any_id(col(TaskRun.id), ids))
        return list((await self.session.exec(statement)).all())

    async def top_level(self, run_ids: Sequence[uuid.UUID]) -> list[TaskRun]:
        """The runs' tasks of the spec itself (for_each children left out)."""
        statement = self.select().where(
            any_id(col(TaskRun.run_id), run_ids), col(TaskRun.parent_id).is_(None)
        )
        return list((await self.session.exec(statement)).all())

    async def children(self, parent_id: uuid.UUID) -> list[TaskRun]:
        statement = (
            self.select()
            .where(col(TaskRun.parent_id) == parent_id)
            .order_by(col(TaskRun.map_index))
        )
        return list((await self.session.exec(statement)).all())

    async def child_status_counts(self, parent_id: uuid.UUID) -> dict[str, int]:
        statement = (
            select(TaskRun.status, func.count())
            .where(col(TaskRun.tenant_id) == self.tenant_id, col(TaskRun.parent_id) == parent_id)
            .group_by(col(TaskRun.status))
        )
        return {status: int(count) for status, count in (await self.session.exec(statement)).all()}

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(TaskRun), rows)

    async def update_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(update(TaskRun), rows)


class AttemptRepository(TenantScopedRepository[TaskAttempt]):
    model = TaskAttempt

    async def for_runs(self, run_ids: Sequence[uuid.UUID]) -> list[TaskAttempt]:
        statement = (
            self.select()
            .where(col(TaskAttempt.run_id).in_(list(run_ids)))
            .order_by(col(TaskAttempt.task_run_id), col(TaskAttempt.attempt))
        )
        return list((await self.session.exec(statement)).all())

    async def upsert_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert attempts, or update the ones that exist (an event may arrive twice)."""
        if not rows:
            return
        statement = pg_insert(TaskAttempt)
        keys = [k for k in rows[0] if k not in ("tenant_id", "task_run_id", "attempt", "run_id")]
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "task_run_id", "attempt"],
            set_={k: statement.excluded[k] for k in keys},
        )
        await self.session.execute(statement, rows)


class LogRepository(TenantScopedRepository[TaskLog]):
    model = TaskLog

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert log lines; a line delivered twice (same seq) is kept once."""
        if not rows:
            return
        await self.session.execute(pg_insert(TaskLog).on_conflict_do_nothing(), rows)

    async def after_seq(
        self, task_run_id: uuid.UUID, attempt: int, seq: int, limit: int = 1000
    ) -> list[TaskLog]:
        """One attempt's lines after ``seq``, in the order it printed them."""
        statement = (
            self.select()
            .where(
                col(TaskLog.task_run_id) == task_run_id,
                col(TaskLog.attempt) == attempt,
                col(TaskLog.seq) > seq,
            )
            .order_by(col(TaskLog.seq))
            .limit(limit)
        )
        return list((await self.session.exec(statement)).all())

    async def page(
        self,
        *,
        task_run_ids: Sequence[uuid.UUID],
        attempt: int | None,
        after: tuple[datetime, uuid.UUID, int, int] | None,
        limit: int,
    ) -> list[TaskLog]:
        statement = self.select().where(col(TaskLog.task_run_id).in_(list(task_run_ids)))
        if attempt is not None:
            statement = statement.where(col(TaskLog.attempt) == attempt)
        # Time order across tasks; (task, attempt, seq) break ties and keep each attempt's
        # lines in the order it printed them.
        order = (
            col(TaskLog.logged_at),
            col(TaskLog.task_run_id),
            col(TaskLog.attempt),
            col(TaskLog.seq),
        )
        if after is not None:
            statement = statement.where(tuple_(*order) > tuple_(*after))
        statement = statement.order_by(*order).limit(limit)
        return list((await self.session.exec(statement)).all())

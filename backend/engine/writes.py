"""Set-based writes of what an events batch changed: one statement per table.

The batch's rows are records (``backend/engine/records.py``), not ORM objects: there is no
unit of work to diff them. :func:`write_changes` sends the changed task runs, runs and
attempts as arrays, each table in one prepared statement whatever the batch size
(``UPDATE ... FROM unnest(...)``, and for attempts ``INSERT ... ON CONFLICT DO UPDATE``,
keyed on (task run, attempt): a replayed event's attempt is absorbed by the upsert),
through the raw asyncpg connection of the batch's transaction, then marks them written.

Only the columns a record changed are written to ``task_runs`` and ``runs``: a mask per
row says which (``CASE WHEN`` the column's bit is set). Admission updates a task run's
``dispatched_at`` and ``attempt`` without the run's lock that the events batch holds, so
writing back a value read before that update would undo it. Attempts have no writer
outside a batch that holds their run's lock (admission only inserts new attempt numbers),
so their rows are written whole.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from backend.engine.records import AttemptRecord, RunRecord, TaskRecord

# (column, SQL array type); json columns travel as text and are cast per row.
_TASK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"),
    ("attempt", "integer"),
    ("max_attempts", "integer"),
    ("ready_at", "timestamptz"),
    ("dispatched_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("deadline_at", "timestamptz"),
    ("heartbeat_at", "timestamptz"),
    ("worker", "text"),
    ("output", "jsonb"),
    ("error", "text"),
    ("reason", "text"),
    ("explanation", "text"),
)
_RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"),
    ("reason", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("deadline_at", "timestamptz"),
)
_ATTEMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "uuid"),
    ("status", "text"),
    ("worker", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("exit_code", "integer"),
    ("error", "text"),
    ("reason", "text"),
    ("output", "jsonb"),
)


def _array_type(kind: str) -> str:
    return "text" if kind == "jsonb" else kind  # jsonb arrays go as text, cast per element


def _value(alias: str, name: str, kind: str) -> str:
    return f"CAST({alias}.{name} AS jsonb)" if kind == "jsonb" else f"{alias}.{name}"


def _masked_update(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    """``UPDATE table`` of the columns whose bit is set in each row's mask: $1 the tenant,
    $2 the ids, $3 the masks, then one array per column."""
    sets = ", ".join(
        f"{name} = CASE WHEN (u.m & {1 << bit}) <> 0 THEN {_value('u', name, kind)} "
        f"ELSE t.{name} END"
        for bit, (name, kind) in enumerate(columns)
    )
    arrays = ", ".join(
        ["$2::uuid[]", "$3::integer[]"]
        + [f"${n}::{_array_type(kind)}[]" for n, (_, kind) in enumerate(columns, start=4)]
    )
    names = ", ".join(["id", "m"] + [name for name, _ in columns])
    return f"""UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS u({names})
               WHERE t.tenant_id = $1 AND t.id = u.id"""  # noqa: S608 - constant names


_UPDATE_TASKS = _masked_update("task_runs", _TASK_COLUMNS)
_UPDATE_RUNS = _masked_update("runs", _RUN_COLUMNS)
_ATTEMPT_NAMES = ", ".join(name for name, _ in _ATTEMPT_COLUMNS)
_ATTEMPT_VALUES = ", ".join(_value("u", name, kind) for name, kind in _ATTEMPT_COLUMNS)
_ATTEMPT_ARRAYS = ", ".join(
    f"${n}::{_array_type(kind)}[]" for n, (_, kind) in enumerate(_ATTEMPT_COLUMNS, start=4)
)
_ATTEMPT_SETS = ", ".join(
    f"{name} = EXCLUDED.{name}" for name, _ in _ATTEMPT_COLUMNS if name != "run_id"
)
# $1 the tenant, $2 the task run ids, $3 the attempt numbers, then one array per column.
_UPSERT_ATTEMPTS = f"""
    INSERT INTO task_attempts (tenant_id, task_run_id, attempt, {_ATTEMPT_NAMES})
    SELECT $1, u.task_run_id, u.attempt, {_ATTEMPT_VALUES}
      FROM unnest($2::uuid[], $3::integer[], {_ATTEMPT_ARRAYS})
        AS u(task_run_id, attempt, {_ATTEMPT_NAMES})
    ON CONFLICT (tenant_id, task_run_id, attempt) DO UPDATE SET {_ATTEMPT_SETS}
    """  # noqa: S608 - column names are the constants above, values bound parameters


def _json(value: Any) -> str:
    # As the ORM stores a JSONB attribute: Python None is JSON null, not SQL NULL.
    return json.dumps(value)


def _masked_arrays(
    records: Iterable[TaskRecord | RunRecord], columns: tuple[tuple[str, str], ...]
) -> list[list[Any]]:
    """[ids, masks, one array per column] of the records that changed a written column."""
    bits = {name: 1 << bit for bit, (name, _) in enumerate(columns)}
    arrays: list[list[Any]] = [[] for _ in range(len(columns) + 2)]
    for record in records:
        mask = 0
        for name in record.changed():
            mask |= bits.get(name, 0)
        if not mask:
            continue
        arrays[0].append(record.id)
        arrays[1].append(mask)
        for index, (name, kind) in enumerate(columns, start=2):
            value = getattr(record, name)
            arrays[index].append(_json(value) if kind == "jsonb" else value)
    return arrays


async def write_changes(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    tasks: Iterable[TaskRecord] = (),
    runs: Iterable[RunRecord] = (),
    attempts: Iterable[AttemptRecord] = (),
) -> None:
    """Write what the records changed since they were read (new attempts whole), one
    statement per table, in the transaction ``conn`` is in; then mark them written."""
    tasks, runs = list(tasks), list(runs)
    new_or_changed: Sequence[AttemptRecord] = [a for a in attempts if a.changed()]
    for statement, records, columns in (
        (_UPDATE_TASKS, tasks, _TASK_COLUMNS),
        (_UPDATE_RUNS, runs, _RUN_COLUMNS),
    ):
        arrays = _masked_arrays(records, columns)
        if arrays[0]:
            await conn.execute(statement, tenant_id, *arrays)
    if new_or_changed:
        arrays = [
            [a.task_run_id for a in new_or_changed],
            [a.attempt for a in new_or_changed],
        ]
        for name, kind in _ATTEMPT_COLUMNS:
            values = [getattr(a, name) for a in new_or_changed]
            arrays.append([_json(v) for v in values] if kind == "jsonb" else values)
        await conn.execute(_UPSERT_ATTEMPTS, tenant_id, *arrays)
    for record in (*tasks, *runs, *new_or_changed):
        record.saved()

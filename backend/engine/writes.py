"""Set-based writes of what an events batch changed: one statement per table.

The engine reads the rows an events batch touches as ORM objects (the DAG code works on
them), but it does not let the ORM's unit of work write them back: that costs, per row,
an attribute-history diff, a parameter set and the grouping of rows by the columns they
changed (often several ``executemany`` statements per table). Instead :func:`write_batch`
sends the batch's changed task runs, runs and attempts as arrays, each table in one
prepared statement whatever the batch size (``UPDATE ... FROM unnest(...)``, and for
attempts ``INSERT ... ON CONFLICT DO UPDATE``, keyed on (task run, attempt): a replayed
event's attempt is absorbed by the upsert), then takes the written objects out of the
session so that nothing is written twice.

Only the columns an object changed are written to ``task_runs`` and ``runs``: a mask per
row says which (``CASE WHEN`` the column's bit is set). Admission updates a task run's
``dispatched_at`` and ``attempt`` without the run's lock that the events batch holds, so
writing back a value read before that update would undo it; the ORM wrote only changed
columns for the same reason. Attempts have no writer outside a batch that holds their
run's lock (admission only inserts new attempt numbers), so their rows are written whole.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import inspect, text
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.runs.models import Run, TaskAttempt, TaskRun

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


def _masked_update(table: str, columns: tuple[tuple[str, str], ...]) -> Any:
    """``UPDATE table`` of the columns whose bit is set in each row's mask."""
    sets = ", ".join(
        f"{name} = CASE WHEN (u.m & {1 << bit}) <> 0 THEN {_value('u', name, kind)} "
        f"ELSE t.{name} END"
        for bit, (name, kind) in enumerate(columns)
    )
    arrays = ", ".join(
        ["CAST(:id AS uuid[])", "CAST(:m AS integer[])"]
        + [f"CAST(:{name} AS {_array_type(kind)}[])" for name, kind in columns]
    )
    names = ", ".join(["id", "m"] + [name for name, _ in columns])
    return text(
        f"""UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS u({names})
            WHERE t.tenant_id = :tenant AND t.id = u.id"""  # noqa: S608 - constant names
    )


_UPDATE_TASKS = _masked_update("task_runs", _TASK_COLUMNS)
_UPDATE_RUNS = _masked_update("runs", _RUN_COLUMNS)
_ATTEMPT_NAMES = ", ".join(name for name, _ in _ATTEMPT_COLUMNS)
_ATTEMPT_VALUES = ", ".join(_value("u", name, kind) for name, kind in _ATTEMPT_COLUMNS)
_ATTEMPT_ARRAYS = ", ".join(
    f"CAST(:{name} AS {_array_type(kind)}[])" for name, kind in _ATTEMPT_COLUMNS
)
_ATTEMPT_SETS = ", ".join(
    f"{name} = EXCLUDED.{name}" for name, _ in _ATTEMPT_COLUMNS if name != "run_id"
)
_UPSERT_ATTEMPTS = text(
    f"""
    INSERT INTO task_attempts (tenant_id, task_run_id, attempt, {_ATTEMPT_NAMES})
    SELECT :tenant, u.task_run_id, u.attempt, {_ATTEMPT_VALUES}
      FROM unnest(CAST(:task_run_id AS uuid[]), CAST(:attempt AS integer[]), {_ATTEMPT_ARRAYS})
        AS u(task_run_id, attempt, {_ATTEMPT_NAMES})
    ON CONFLICT (tenant_id, task_run_id, attempt) DO UPDATE SET {_ATTEMPT_SETS}
    """  # noqa: S608 - column names are the constants above, values bound parameters
)


def _json(value: Any) -> str:
    # As the ORM stores a JSONB attribute: Python None is JSON null, not SQL NULL.
    return json.dumps(value)


def _masked_rows(objects: list[Any], columns: tuple[tuple[str, str], ...]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {"id": [], "m": []}
    for name, _ in columns:
        params[name] = []
    bits = {name: 1 << bit for bit, (name, _) in enumerate(columns)}
    for obj in objects:
        # As the unit of work decides: an attribute set to the value it had is not written.
        before = inspect(obj).committed_state
        mask = 0
        for name, old in before.items():
            bit = bits.get(name)
            if bit is not None and getattr(obj, name) != old:
                mask |= bit
        if not mask:
            continue
        params["id"].append(obj.id)
        params["m"].append(mask)
        for name, kind in columns:
            value = getattr(obj, name)
            params[name].append(_json(value) if kind == "jsonb" else value)
    return params


async def write_batch(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Write the task runs, runs and attempts the session holds as changed or new, in
    one statement per table, and detach them from the session (they stay readable).

    Other new or changed objects (a fan-out's new children) are left to the session's
    own flush."""
    sync = session.sync_session
    dirty = sync.dirty
    tasks = [o for o in dirty if isinstance(o, TaskRun)]
    runs = [o for o in dirty if isinstance(o, Run)]
    attempts = [o for o in (*dirty, *sync.new) if isinstance(o, TaskAttempt)]
    with sync.no_autoflush:  # the unit of work must not write these rows first
        params: dict[str, Any] = _masked_rows(tasks, _TASK_COLUMNS)
        if params["id"]:
            await session.execute(_UPDATE_TASKS, {"tenant": tenant_id, **params})
        params = _masked_rows(runs, _RUN_COLUMNS)
        if params["id"]:
            await session.execute(_UPDATE_RUNS, {"tenant": tenant_id, **params})
        if attempts:
            params = {"task_run_id": [a.task_run_id for a in attempts]}
            params["attempt"] = [a.attempt for a in attempts]
            for name, kind in _ATTEMPT_COLUMNS:
                values = [getattr(a, name) for a in attempts]
                params[name] = [_json(v) for v in values] if kind == "jsonb" else values
            await session.execute(_UPSERT_ATTEMPTS, {"tenant": tenant_id, **params})
    for obj in (*tasks, *runs, *attempts):
        sync.expunge(obj)

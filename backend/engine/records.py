"""The rows an events batch works on, as plain records instead of ORM objects.

A chain step used to read its run and the run's top-level tasks as SQLModel objects: each
one an instrumented instance with its own identity-map entry and attribute history, built
by SQLAlchemy's loading machinery. With the statements themselves that was most of the
engine's time on a step (about 7 of a 20 ms hop went to the batch's three reads). A
record is a slotted object with the table's columns as attributes, filled from an asyncpg
row (``backend/engine/reads.py``) and remembering what it was read as, so that the writes
(``backend/engine/writes.py``) send only the columns the batch changed.

The attribute names are the columns', so the DAG code (``runs/advance.py``) and the live
updates (``runs/publish.py``) work on a record as on the ORM object the trigger path uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Self


class Record:
    """A row's columns as attributes, and the values it had when read (or last written)."""

    __slots__ = ("_saved",)
    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        for name in self.COLUMNS:
            setattr(self, name, values.get(name))
        self._saved: tuple[Any, ...] | None = None  # new: never written

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Self:
        """The record of a row read from the database, its columns in :attr:`COLUMNS` order
        (``engine/reads.py`` selects them so): nothing changed yet."""
        record = cls.__new__(cls)
        values = tuple(row)
        for name, value in zip(cls.COLUMNS, values, strict=True):
            setattr(record, name, value)
        record._saved = values  # what it was read as: no second pass over the attributes
        return record

    @property
    def is_new(self) -> bool:
        return self._saved is None

    def saved(self) -> None:
        """What it holds now is what the database holds (read, or just written)."""
        self._saved = tuple(getattr(self, name) for name in self.COLUMNS)

    def changed(self) -> frozenset[str]:
        """The columns set to another value since it was read or written (all if new)."""
        if self._saved is None:
            return frozenset(self.COLUMNS)
        return frozenset(
            name
            for name, before in zip(self.COLUMNS, self._saved, strict=True)
            if getattr(self, name) != before
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.COLUMNS[:6])
        return f"{type(self).__name__}({shown}, ...)"


class RunRecord(Record):
    COLUMNS = (
        "tenant_id",
        "id",
        "job_id",
        "job_version",
        "status",
        "trigger",
        "params",
        "reason",
        "scheduled_for",
        "deadline_at",
        "created_at",
        "started_at",
        "finished_at",
    )
    __slots__ = COLUMNS
    tenant_id: uuid.UUID
    id: uuid.UUID
    job_id: uuid.UUID
    job_version: int
    status: str
    trigger: str
    params: dict[str, Any]
    reason: str | None
    scheduled_for: datetime | None
    deadline_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskRecord(Record):
    COLUMNS = (
        "tenant_id",
        "id",
        "run_id",
        "name",
        "queue",
        "status",
        "attempt",
        "max_attempts",
        "ready_at",
        "dispatched_at",
        "started_at",
        "finished_at",
        "deadline_at",
        "heartbeat_at",
        "worker",
        "output",
        "error",
        "reason",
        "explanation",
        "parent_id",
        "map_index",
        "item",
    )
    __slots__ = COLUMNS
    tenant_id: uuid.UUID
    id: uuid.UUID
    run_id: uuid.UUID
    name: str
    queue: str
    status: str
    attempt: int
    max_attempts: int
    ready_at: datetime | None
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    output: Any
    error: str | None
    reason: str | None
    explanation: str | None
    parent_id: uuid.UUID | None
    map_index: int | None
    item: Any


class AttemptRecord(Record):
    COLUMNS = (
        "tenant_id",
        "task_run_id",
        "attempt",
        "run_id",
        "status",
        "worker",
        "started_at",
        "finished_at",
        "exit_code",
        "error",
        "reason",
        "output",
    )
    __slots__ = COLUMNS
    tenant_id: uuid.UUID
    task_run_id: uuid.UUID
    attempt: int
    run_id: uuid.UUID
    status: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    reason: str | None
    output: Any

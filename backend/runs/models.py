"""Runs, task runs, attempts and log lines - the execution history, all tenant-owned."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, utcnow, uuid7, uuid_pk
from kernel.dag.status import RunStatus, TaskStatus


def _json_column(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONB, nullable=nullable))


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)  # time-ordered
    job_id: uuid.UUID
    job_version: int
    status: str = Field(default=RunStatus.queued, max_length=20)
    trigger: str = Field(max_length=20)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    idempotency_key: str | None = Field(default=None, max_length=200)
    run_at: datetime = timestamp()
    scheduled_for: datetime | None = timestamp(nullable=True, default_now=False)
    deadline_at: datetime | None = timestamp(nullable=True, default_now=False)
    reason: str | None = None
    rerun_of: uuid.UUID | None = None
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()
    started_at: datetime | None = timestamp(nullable=True, default_now=False)
    finished_at: datetime | None = timestamp(nullable=True, default_now=False)


class TaskRun(SQLModel, table=True):
    __tablename__ = "task_runs"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    run_id: uuid.UUID
    name: str = Field(max_length=100)
    queue: str = Field(max_length=63)
    status: str = Field(default=TaskStatus.pending, max_length=20)
    attempt: int = 0
    max_attempts: int = 1
    ready_at: datetime | None = timestamp(nullable=True, default_now=False)
    dispatched_at: datetime | None = timestamp(nullable=True, default_now=False)
    started_at: datetime | None = timestamp(nullable=True, default_now=False)
    finished_at: datetime | None = timestamp(nullable=True, default_now=False)
    deadline_at: datetime | None = timestamp(nullable=True, default_now=False)
    heartbeat_at: datetime | None = timestamp(nullable=True, default_now=False)
    worker: str | None = Field(default=None, max_length=200)
    output: Any = _json_column()
    error: str | None = None
    reason: str | None = Field(default=None, max_length=30)
    explanation: str | None = None  # why it was skipped / upstream_failed / cancelled
    parent_id: uuid.UUID | None = None  # the for_each group this child belongs to
    map_index: int | None = None
    item: Any = _json_column()


def plan_name(task_name: str) -> str:
    """The spec task a task run instantiates: ``per_file[3]`` -> ``per_file``."""
    return task_name.split("[", 1)[0]


class TaskAttempt(SQLModel, table=True):
    __tablename__ = "task_attempts"

    tenant_id: uuid.UUID = tenant_pk()
    task_run_id: uuid.UUID = Field(primary_key=True)
    attempt: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    run_id: uuid.UUID
    status: str = Field(max_length=20)
    worker: str | None = Field(default=None, max_length=200)
    started_at: datetime | None = timestamp(nullable=True, default_now=False)
    finished_at: datetime | None = timestamp(nullable=True, default_now=False)
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = Field(default=None, max_length=30)
    output: Any = _json_column()


class TaskLog(SQLModel, table=True):
    __tablename__ = "task_logs"

    tenant_id: uuid.UUID = tenant_pk()
    task_run_id: uuid.UUID = Field(primary_key=True)
    attempt: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    # In the key because the table is partitioned by it (migration 0014); a replayed
    # line carries the same instant, so it is still written once.
    logged_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False),
    )
    stream: str = Field(max_length=10)
    line: str

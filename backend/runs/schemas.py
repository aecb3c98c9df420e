"""Request and response bodies of the run endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from backend.core.schemas import AwareInstant, RequestModel, ResponseModel
from backend.jobs.schemas import GraphEdge, GraphNode
from backend.jobs.spec import MAX_PARAM_KEY, MAX_PARAMS

MAX_DELAY_SECONDS = 366 * 24 * 3600
MAX_BATCH = 1000


class RunTrigger(RequestModel):
    # Bounded as a job spec's own params are.
    params: dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_PARAM_KEY)], Any] = (
        Field(default_factory=dict, max_length=MAX_PARAMS, description="Overrides the job's params")
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    delay_seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS)
    run_at: AwareInstant | None = Field(default=None, description="Start no earlier than this")

    @model_validator(mode="after")
    def _one_start_time(self) -> Self:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        return self


class RunBatchTrigger(RequestModel):
    runs: list[RunTrigger] = Field(min_length=1, max_length=MAX_BATCH)


class RerunRequest(RequestModel):
    from_failed: bool = False


class AttemptPublic(ResponseModel):
    attempt: int
    status: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    reason: str | None
    output: Any = None


class TaskRunPublic(ResponseModel):
    id: uuid.UUID
    name: str
    status: str
    attempt: int
    max_attempts: int
    queue: str
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    output: Any = None
    error: str | None
    reason: str | None
    explanation: str | None = Field(
        default=None, description="Why the task was skipped, upstream_failed or cancelled"
    )
    parent_id: uuid.UUID | None = Field(default=None, description="The for_each group")
    map_index: int | None = None
    item: Any = None
    attempts: list[AttemptPublic] = Field(default_factory=list)


class RunPublic(ResponseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    job_version: int
    status: str
    trigger: str
    params: dict[str, Any]
    idempotency_key: str | None
    run_at: datetime
    scheduled_for: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    rerun_of: uuid.UUID | None


class RunSlaMiss(ResponseModel):
    """The run missed its job's SLA (``sla:``, docs/notifications.md): which deadline, when
    it was, and when the miss was noticed."""

    kind: str = Field(description="max_duration or finish_by")
    deadline_at: datetime
    detected_at: datetime


class RunDetail(RunPublic):
    tasks: list[TaskRunPublic]
    sla_miss: RunSlaMiss | None = Field(
        default=None, description="Set once the run has missed its job's SLA"
    )


class RunPage(ResponseModel):
    items: list[RunPublic]
    next_cursor: str | None = None
    # How far back history goes: runs (and their tasks, attempts, logs) older than this
    # are removed by the plan's retention; None: kept forever.
    retention_days: int | None = None
    history_since: datetime | None = None


class RunBatchResult(ResponseModel):
    runs: list[RunPublic]
    created: int


class LogLinePublic(ResponseModel):
    task: str
    attempt: int
    seq: int
    logged_at: datetime
    stream: str
    line: str


class LogPage(ResponseModel):
    items: list[LogLinePublic]
    next_cursor: str | None = None


class RunGraphNode(GraphNode):
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    reason: str | None
    explanation: str | None = Field(description="Why it was skipped, upstream_failed, cancelled")
    error: str | None
    items: dict[str, int] | None = Field(
        default=None, description="for_each groups: how many items are in each status"
    )


class RunGraph(ResponseModel):
    run_id: uuid.UUID
    job_id: uuid.UUID
    version: int
    status: str
    nodes: list[RunGraphNode]
    edges: list[GraphEdge]
    layers: list[list[str]]

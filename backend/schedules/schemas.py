"""Response bodies of the schedule endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from backend.core.schemas import ResponseModel


class SchedulePublic(ResponseModel):
    job_id: uuid.UUID
    job_version: int
    spec: dict[str, Any] = Field(description="The job's schedule: section")
    paused: bool
    next_due_at: datetime | None


class TickPublic(ResponseModel):
    scheduled_for: datetime = Field(description="The instant it was due (UTC)")
    wall_time: str = Field(description="The local wall-clock time the cron matched")
    outcome: str = Field(description="fired | skipped | missed | planned | superseded")
    reason: str | None
    run_id: uuid.UUID | None
    recorded_at: datetime


class TickPage(ResponseModel):
    items: list[TickPublic]
    next_cursor: str | None = None


class FireTime(ResponseModel):
    utc: datetime
    local: datetime
    wall_time: str
    note: str | None = Field(default=None, description="How a DST policy moved or doubled it")


class FirePreview(ResponseModel):
    timezone: str
    items: list[FireTime]

"""A scheduled job's schedule, and the ledger of every instant it was due."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp


class Schedule(SQLModel, table=True):
    """The ``schedule:`` section of a job's current version, plus where the scheduler is.

    ``checked_until``: every due instant up to here has its tick in the ledger.
    ``next_due_at``: the next instant to look at (indexed: a scheduler tick reads only
    what is due). ``fence``: the highest lease token that wrote this row; a scheduler
    holding an older token is refused (a stale leaseholder cannot fire).
    """

    __tablename__ = "schedules"

    tenant_id: uuid.UUID = tenant_pk()
    job_id: uuid.UUID = Field(primary_key=True)
    job_version: int
    spec: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    paused: bool = False
    paused_since: datetime | None = timestamp(nullable=True, default_now=False)
    next_due_at: datetime | None = timestamp(nullable=True, default_now=False)
    checked_until: datetime = timestamp()
    fence: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = timestamp()
    # The instant up to which the next fire has been prepared ahead (its run ``planned``,
    # its tick ``planned``; none for a policy that decides only at the instant); NULL when
    # nothing is prepared (an edit or a pause dropped it).
    planned_for: datetime | None = timestamp(nullable=True, default_now=False)


class ScheduleTick(SQLModel, table=True):
    """One instant a schedule was due, and what came of it: fired (with the run),
    skipped (paused, concurrency policy, misfire policy, DST policy) or missed; before
    the instant, planned (its run prepared ahead) or superseded (the prepared fire was
    dropped by an edit, a pause or a deletion before its instant)."""

    __tablename__ = "schedule_ticks"

    tenant_id: uuid.UUID = tenant_pk()
    job_id: uuid.UUID = Field(primary_key=True)
    scheduled_for: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    wall_time: str = Field(max_length=40)
    outcome: str = Field(max_length=10)
    reason: str | None = None
    run_id: uuid.UUID | None = None
    recorded_at: datetime = timestamp()

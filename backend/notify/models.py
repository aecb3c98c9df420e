"""A tenant's notification channels, the rules that route run events to them, and the
log of every notification (also the queue the sender loop works from)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid7, uuid_pk


class NotificationChannel(SQLModel, table=True):
    """Where notifications go: ``email`` (SMTP), ``slack`` (incoming webhook) or
    ``webhook`` (a signed POST). URLs and passwords are named secrets, never stored here."""

    __tablename__ = "notification_channels"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100)
    kind: str = Field(max_length=10)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()


class NotificationRule(SQLModel, table=True):
    """Send ``events`` of one job (or of every job: ``job_id`` None) to a channel."""

    __tablename__ = "notification_rules"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    channel_id: uuid.UUID
    job_id: uuid.UUID | None = None
    events: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()


class NotificationDelivery(SQLModel, table=True):
    """One notification: pending (due at ``next_at``), sent, failed (attempts used up) or
    throttled (not sent: one of its kind went out within the throttle window)."""

    __tablename__ = "notification_deliveries"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    channel_id: uuid.UUID
    rule_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    event: str = Field(max_length=30)
    status: str = Field(default="pending", max_length=10)
    attempts: int = 0
    next_at: datetime = timestamp()
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    response_code: int | None = None
    response_body: str | None = Field(default=None, max_length=1000)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = timestamp()
    sent_at: datetime | None = timestamp(nullable=True, default_now=False)


class SlaMiss(SQLModel, table=True):
    """A run that missed its job's SLA: recorded once (the primary key), which is what
    marks the run, counts the metric and notifies ``sla_miss`` exactly once."""

    __tablename__ = "sla_misses"

    tenant_id: uuid.UUID = tenant_pk()
    run_id: uuid.UUID = Field(primary_key=True)
    job_id: uuid.UUID
    kind: str = Field(max_length=20)  # max_duration | finish_by
    deadline_at: datetime = timestamp()
    detected_at: datetime = timestamp()

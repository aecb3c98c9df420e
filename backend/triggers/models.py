"""Inbound webhook endpoints of a job and the record of every delivery to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid7, uuid_pk


class WebhookEndpoint(SQLModel, table=True):
    """``POST /hooks/<token>`` starts a run of ``job_id``. The token (the URL's secret) is
    stored only as its SHA-256; ``token_prefix`` is what lists show of it."""

    __tablename__ = "webhook_endpoints"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    job_id: uuid.UUID
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64)
    token_prefix: str = Field(max_length=80)
    # none | github (X-Hub-Signature-256) | stripe (t=<unix>,v1=<hex> over "<t>.<body>")
    signature: str = Field(default="none", max_length=10)
    secret_name: str | None = Field(default=None, max_length=64)
    tolerance_seconds: int = 300
    # run param name -> JSON path into the payload ("$.head_commit.id")
    mapping: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()


class WebhookDelivery(SQLModel, table=True):
    """One request to an endpoint: accepted (with its run), duplicate (an idempotency key
    seen before: the earlier run answers) or refused, and why."""

    __tablename__ = "webhook_deliveries"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)  # time-ordered
    endpoint_id: uuid.UUID
    job_id: uuid.UUID
    received_at: datetime = timestamp()
    outcome: str = Field(max_length=10)  # accepted | duplicate | refused
    reason: str | None = Field(default=None, max_length=300)
    status_code: int
    run_id: uuid.UUID | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)
    # SHA-256 of the signature header of an accepted delivery: the same one again is a replay.
    signature_digest: str | None = Field(default=None, max_length=64)
    body_bytes: int = 0
    source_ip: str | None = Field(default=None, max_length=64)


class RunFinishOutbox(SQLModel, table=True):
    """A run that reached a final state, written in the transaction that finished it and
    consumed (then deleted) by the reactor loop beside the engine: job-to-job triggers."""

    __tablename__ = "run_finish_outbox"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)  # time-ordered
    run_id: uuid.UUID
    job_id: uuid.UUID
    status: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=300)
    finished_at: datetime = timestamp()


class RunRefusalOutbox(SQLModel, table=True):
    """A run a plan limit refused (``backend.runs.hooks.RefusedRun``), written in the
    transaction that recorded the refusal and consumed (then deleted) by the reactor loop:
    the ``quota_cancelled`` notifications."""

    __tablename__ = "run_refusal_outbox"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)  # time-ordered
    job_id: uuid.UUID
    source: str = Field(max_length=20)  # schedule | webhook | upstream
    limit_name: str | None = Field(default=None, max_length=40)
    reason: str = Field(max_length=300)
    refused_at: datetime = timestamp()
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))

"""Audit events: append-only and hash-chained per tenant.

``hash = sha256(prev_hash || canonical JSON of the event)``; ``seq`` numbers each tenant's
chain without gaps. The runtime database role may only INSERT and SELECT this table.
Events of the hot path (triggers) are first appended to ``audit_pending`` without any lock
and sealed into the chain off the request path (``backend.audit.sealer``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    tenant_id: uuid.UUID = tenant_pk()
    seq: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = timestamp()
    actor_type: str = Field(max_length=20)
    actor_id: str | None = Field(default=None, max_length=64)
    actor_label: str | None = Field(default=None, max_length=320)
    action: str = Field(max_length=100)
    target_type: str | None = Field(default=None, max_length=50)
    target_id: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=20)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    request_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # The ``audit_pending`` row this event was sealed from (None: appended directly).
    pending_id: int | None = Field(default=None, sa_type=BigInteger)


class AuditCheckpoint(SQLModel, table=True):
    """Where retention cut a tenant's chain: the first kept ``seq`` and the hash of the
    event before it, signed (``audit.service.checkpoint_signature``). Written only by the
    ``audit_cut`` function, with the deletion of the events before it."""

    __tablename__ = "audit_checkpoints"

    tenant_id: uuid.UUID = tenant_pk()
    seq: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    prev_hash: str = Field(max_length=64)
    events_removed: int = Field(sa_type=BigInteger)
    cut_before: datetime = timestamp()
    key_id: str = Field(max_length=64)
    signature: str = Field(max_length=64)
    created_at: datetime = timestamp()

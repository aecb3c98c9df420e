"""Column helpers shared by every domain's SQLModel tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_expired(expires_at: datetime | None) -> bool:
    return expires_at is not None and expires_at <= utcnow()


def uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, sa_column_kwargs={}, primary_key=True)


def tenant_pk() -> Any:
    """``tenant_id`` as the first column of a tenant-owned table's primary key."""
    return Field(sa_type=UUID(as_uuid=True), primary_key=True)


def timestamp(*, nullable: bool = False, default_now: bool = True) -> Any:
    if default_now:
        return Field(
            default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=nullable)
        )
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))

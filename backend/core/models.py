"""Column helpers shared by every domain's SQLModel tables."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48 bits of Unix milliseconds, then random.

    Ids that sort by creation time make "oldest first" an index order (admission walks
    runs by id) and keep B-tree inserts at the right edge.
    """
    millis = int(time.time() * 1000)
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)


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

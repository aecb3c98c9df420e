"""Tenant API tokens: for CI, the CLI and tenant-hosted workers."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64)
    created_by: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime = timestamp()
    expires_at: datetime | None = timestamp(nullable=True, default_now=False)
    revoked_at: datetime | None = timestamp(nullable=True, default_now=False)
    last_used_at: datetime | None = timestamp(nullable=True, default_now=False)

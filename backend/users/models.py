"""Users (platform-wide identities) and rotating refresh tokens (tenant-owned)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = uuid_pk()
    email: str = Field(max_length=320, unique=True)
    password_hash: str | None = Field(default=None, max_length=255)
    is_superuser: bool = False
    created_at: datetime = timestamp()
    last_login_at: datetime | None = timestamp(nullable=True, default_now=False)
    # Set when the owner of the address followed a mailed link (backend/accounts).
    email_verified_at: datetime | None = timestamp(nullable=True, default_now=False)


class RefreshToken(SQLModel, table=True):
    """One link of a rotation chain. A family is every token descended from one login."""

    __tablename__ = "refresh_tokens"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = Field(foreign_key="users.id")
    family_id: uuid.UUID
    token_hash: str = Field(max_length=64)
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp()
    used_at: datetime | None = timestamp(nullable=True, default_now=False)
    revoked_at: datetime | None = timestamp(nullable=True, default_now=False)

"""``account_tokens``: the single-use tokens mailed for verification, password reset and
invitations. A platform table (like ``users``): a link is redeemed by someone not logged
in, outside any tenant's scope; ``tenant`` is the inviting tenant's id (invitations)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from backend.core.models import timestamp, uuid_pk


class TokenPurpose(StrEnum):
    verify_email = "verify_email"
    reset_password = "reset_password"
    invitation = "invitation"


class AccountToken(SQLModel, table=True):
    __tablename__ = "account_tokens"

    id: uuid.UUID = uuid_pk()
    purpose: str = Field(max_length=20)
    token_hash: str = Field(max_length=128, unique=True)  # only the hash is kept
    email: str = Field(max_length=320)
    user_id: uuid.UUID | None = None
    tenant: uuid.UUID | None = None
    role: str | None = Field(default=None, max_length=20)
    invited_by: uuid.UUID | None = None
    expires_at: datetime = timestamp()
    used_at: datetime | None = timestamp(nullable=True, default_now=False)
    created_at: datetime = timestamp()

"""Request and response bodies of the account lifecycle API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from backend.core.permissions import Role


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=200)


class PasswordResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr


class PasswordResetConfirm(TokenBody):
    password: str = Field(min_length=1, max_length=1024)


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    role: Role


class InvitationAccept(TokenBody):
    password: str | None = Field(
        default=None, max_length=1024, description="Required when the email has no account"
    )


class InvitationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: str | None
    expires_at: datetime
    created_at: datetime


class Accepted(BaseModel):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str


class InvitationInvite(BaseModel):
    """What an invitation link offers, shown before it is accepted."""

    email: str
    tenant_name: str
    role: str
    has_account: bool  # the address has an account: joining asks no password

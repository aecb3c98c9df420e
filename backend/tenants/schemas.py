"""Request and response bodies of /me and the members endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import EmailStr, Field

from backend.core.permissions import Role
from backend.core.schemas import RequestModel, ResponseModel
from backend.users.schemas import UserPublic


class TenantDetail(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str
    plan: str
    status: str


class MeResponse(ResponseModel):
    user: UserPublic
    tenant: TenantDetail
    role: Role
    auth: str = Field(description="'session' for a JWT, 'api_token' for an API token")


class MemberCreate(RequestModel):
    email: EmailStr
    role: Role
    password: str | None = Field(
        default=None,
        max_length=1024,
        description="Initial password when the email has no Baton account yet",
    )


class MemberUpdate(RequestModel):
    role: Role


class MemberPublic(ResponseModel):
    user_id: uuid.UUID
    email: str
    role: Role
    created_at: datetime

"""Request and response bodies of the API token endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from backend.core.permissions import Role
from backend.core.schemas import RequestModel, ResponseModel


class ApiTokenCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiTokenPublic(ResponseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    created_by: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenPublic):
    token: str = Field(description="The secret. Shown only in this response; store it now.")

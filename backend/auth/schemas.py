"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

import uuid

from pydantic import EmailStr, Field

from backend.core.schemas import RequestModel, ResponseModel
from backend.users.schemas import UserPublic


class SignupRequest(RequestModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    tenant_name: str = Field(min_length=1, max_length=200)


class LoginRequest(RequestModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(default=None, max_length=63, description="Tenant slug")


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(RequestModel):
    refresh_token: str | None = Field(default=None, max_length=512)


class TokenPair(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class TenantPublic(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str


class SignupResponse(TokenPair):
    tenant: TenantPublic
    user: UserPublic

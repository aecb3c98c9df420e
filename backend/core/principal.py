"""Who is calling and from where: the values every service receives from a request."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from backend.core.permissions import Role


@dataclass(frozen=True)
class RequestOrigin:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Actor:
    """The subject an audit event is attributed to."""

    type: str  # user | token | system
    id: str | None = None
    label: str | None = None


SYSTEM_ACTOR = Actor(type="system", label="baton")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller acting inside one tenant with one (current) role."""

    user_id: uuid.UUID
    email: str
    tenant_id: uuid.UUID
    role: Role
    is_superuser: bool
    origin: RequestOrigin
    token_id: uuid.UUID | None = None
    jti: str | None = None
    access_expires_at: datetime | None = None
    # The tenant's plan and its limits as resolved at authentication (backend/plans);
    # empty: unlimited (a principal built outside a request, e.g. by the CLI).
    plan: str = ""
    limits: Mapping[str, int | None] = field(default_factory=dict, compare=False, hash=False)
    # The installation requires verified email addresses and this one is not (yet).
    unverified_email: bool = False

    @property
    def actor(self) -> Actor:
        if self.token_id is not None:
            return Actor(type="token", id=str(self.token_id), label=self.email)
        return Actor(type="user", id=str(self.user_id), label=self.email)

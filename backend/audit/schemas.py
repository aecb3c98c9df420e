"""Response bodies of the audit endpoint."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from backend.core.schemas import ResponseModel


class AuditOutcome(StrEnum):
    """How an audited action ended (``audit.service.record``'s ``outcome``)."""

    success = "success"
    failure = "failure"


class AuditEventPublic(ResponseModel):
    id: uuid.UUID
    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(ResponseModel):
    items: list[AuditEventPublic]
    next_cursor: str | None = None

"""Response bodies of the platform admin endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from backend.core.schemas import ResponseModel


class TenantAdminView(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str
    plan: str
    status: str
    created_at: datetime


class TenantAdminPage(ResponseModel):
    items: list[TenantAdminView]
    next_cursor: str | None = None

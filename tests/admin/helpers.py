"""URLs of the platform administration API, shared by the admin tests."""

from __future__ import annotations

import uuid

TENANTS = "/api/v1/admin/tenants"


def suspend_url(tenant_id: uuid.UUID | str) -> str:
    return f"{TENANTS}/{tenant_id}/suspend"


def resume_url(tenant_id: uuid.UUID | str) -> str:
    return f"{TENANTS}/{tenant_id}/resume"

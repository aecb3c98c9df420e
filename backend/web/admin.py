"""Dashboard pages: the admin console (platform superusers only).

Tenants with plan, usage and state; suspend and resume; platform health (workers, queue
depth, scheduler replicas and leases). The same ``admin.service`` functions serve
``/api/v1/admin``.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response

from backend.admin import service as admin_service
from backend.core.db import SessionDep
from backend.core.deps import RedisDep, SettingsDep
from backend.web.csrf import CsrfChecked
from backend.web.render import fragment, page, redirect
from backend.web.session import WebSuperuser

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
CursorText = Annotated[str, Query(max_length=100)]
CursorField = Annotated[str, Form(max_length=100)]
NOTICES = {
    "tenant-suspended": "Tenant suspended: its users can no longer log in or use API tokens.",
    "tenant-resumed": "Tenant resumed: its users' sessions and API tokens work again.",
}


@router.get("/admin")
async def console(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    principal: WebSuperuser,
    cursor: CursorText = "",
    notice: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """Every tenant (newest first, 50 a page) with its usage and state, and platform health."""
    tenants, next_cursor = await admin_service.list_tenants(
        session, limit=PAGE_SIZE, cursor=cursor or None
    )
    usage = await admin_service.tenant_usage(session, principal, tenants)
    health = await admin_service.platform_health(session, redis, settings)
    return page(
        request,
        "admin/index.html",
        {
            "principal": principal,
            "section": "admin",
            "tenants": tenants,
            "usage": usage,
            "health": health,
            "cursor": cursor,
            "next_url": "/admin?" + urlencode({"cursor": next_cursor}) if next_cursor else None,
            "notice": NOTICES.get(notice),
        },
    )


@router.get("/admin/health")
async def health(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    _: WebSuperuser,
) -> Response:
    """The platform health panel alone (the console refreshes it in place)."""
    report = await admin_service.platform_health(session, redis, settings)
    return fragment(request, "admin/_health.html", {"health": report})


@router.post("/admin/tenants/{tenant_id}/suspend")
async def suspend_tenant(
    request: Request,
    tenant_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    principal: WebSuperuser,
    cursor: CursorField = "",
) -> Response:
    """Suspend a tenant (as ``POST /api/v1/admin/tenants/{id}/suspend``)."""
    await admin_service.suspend_tenant(session, principal, tenant_id)
    return redirect(request, _back(cursor, "tenant-suspended"))


@router.post("/admin/tenants/{tenant_id}/resume")
async def resume_tenant(
    request: Request,
    tenant_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: WebSuperuser,
    cursor: CursorField = "",
) -> Response:
    """Resume a suspended tenant (as ``POST /api/v1/admin/tenants/{id}/resume``)."""
    await admin_service.resume_tenant(session, redis, principal, tenant_id)
    return redirect(request, _back(cursor, "tenant-resumed"))


def _back(cursor: str, notice: str) -> str:
    """The console page the form was on, saying what happened."""
    return "/admin?" + urlencode({"notice": notice, **({"cursor": cursor} if cursor else {})})

"""Dashboard page: the tenant's usage this month against its plan's limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from backend.billing import service as billing_service
from backend.core.db import SessionDep
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.web.render import page
from backend.web.session import WebAuthorized

router = APIRouter(include_in_schema=False)


@router.get("/settings/usage")
async def usage(
    request: Request,
    session: SessionDep,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
    principal: Principal = WebAuthorized(Permission.profile_read),
) -> Response:
    """The month's usage by day and a bar per plan limit (amber from 80 %, red when full)."""
    report = await billing_service.usage_report(session, principal, month)
    bars = [
        {
            "limit": item,
            "percent": min(100, round(100 * item.used / item.allowed)) if item.allowed else 0,
        }
        for item in report.limits
        if item.used is not None
    ]
    return page(
        request,
        "settings/usage.html",
        {"principal": principal, "section": "usage", "report": report, "bars": bars},
    )

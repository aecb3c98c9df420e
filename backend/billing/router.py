"""/usage: the tenant's metered usage against its plan."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.billing import service
from backend.billing.schemas import UsageReport
from backend.core.db import SessionDep
from backend.core.deps import Authorized
from backend.core.openapi import AUTHENTICATED
from backend.core.permissions import Permission
from backend.core.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["billing"], responses=AUTHENTICATED)


@router.get("/usage", response_model=UsageReport)
async def usage(
    session: SessionDep,
    month: Annotated[
        str | None,
        Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default: this month"),
    ] = None,
    principal: Principal = Authorized(Permission.profile_read),
) -> UsageReport:
    """The month's usage by UTC day (runs, task-seconds, log bytes, API requests; rolled
    up every few minutes) and each limit of the tenant's plan against what is used of it
    now (``warning`` at 80 %)."""
    return await service.usage_report(session, principal, month)

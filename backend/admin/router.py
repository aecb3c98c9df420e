"""Platform admin API (superusers only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.admin import service
from backend.admin.schemas import TenantAdminPage, TenantAdminView
from backend.core.db import SessionDep
from backend.core.deps import SuperuserPrincipal

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/tenants", response_model=TenantAdminPage)
async def list_tenants(
    session: SessionDep,
    _: SuperuserPrincipal,
    cursor: Annotated[
        str | None, Query(max_length=100, description="A previous page's next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TenantAdminPage:
    """Every tenant on the platform with its plan and state, newest first."""
    tenants, next_cursor = await service.list_tenants(session, limit=limit, cursor=cursor)
    return TenantAdminPage(
        items=[TenantAdminView.model_validate(t) for t in tenants], next_cursor=next_cursor
    )

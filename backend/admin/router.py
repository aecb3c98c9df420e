"""Platform admin API (superusers only): tenants, their state, platform health."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from backend.admin import service
from backend.admin.schemas import PlatformHealth, TenantAdminPage, TenantAdminView
from backend.core.db import SessionDep
from backend.core.deps import RedisDep, SettingsDep, SuperuserPrincipal
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT
from backend.plans.schemas import TenantPlanUpdate

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=AUTHENTICATED)


@router.get("/tenants", response_model=TenantAdminPage)
async def list_tenants(
    session: SessionDep,
    principal: SuperuserPrincipal,
    cursor: Annotated[
        str | None, Query(max_length=100, description="A previous page's next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TenantAdminPage:
    """Every tenant on the platform with its plan, state and usage now (jobs, runs in the
    last 24 hours, running tasks), newest first."""
    tenants, next_cursor = await service.list_tenants(session, limit=limit, cursor=cursor)
    usage = await service.tenant_usage(session, principal, tenants)
    items = [
        TenantAdminView.model_validate(t).model_copy(update={"usage": usage.get(t.id)})
        for t in tenants
    ]
    return TenantAdminPage(items=items, next_cursor=next_cursor)


@router.post(
    "/tenants/{tenant_id}/suspend",
    response_model=TenantAdminView,
    responses={**BY_ID, **CONFLICT},
)
async def suspend_tenant(
    tenant_id: uuid.UUID, session: SessionDep, principal: SuperuserPrincipal
) -> TenantAdminView:
    """Suspend a tenant: its users' logins, sessions and API tokens are refused, no new
    task of it starts and its schedules skip their ticks until it is resumed. Recorded in
    the tenant's audit log. Suspending it again changes nothing."""
    tenant = await service.suspend_tenant(session, principal, tenant_id)
    return TenantAdminView.model_validate(tenant)


@router.post("/tenants/{tenant_id}/resume", response_model=TenantAdminView, responses=BY_ID)
async def resume_tenant(
    tenant_id: uuid.UUID, session: SessionDep, redis: RedisDep, principal: SuperuserPrincipal
) -> TenantAdminView:
    """Make a suspended tenant active again; the tasks that waited start. Recorded in the
    tenant's audit log."""
    tenant = await service.resume_tenant(session, redis, principal, tenant_id)
    return TenantAdminView.model_validate(tenant)


@router.put("/tenants/{tenant_id}/plan", response_model=TenantAdminView, responses=BY_ID)
async def set_tenant_plan(
    tenant_id: uuid.UUID,
    body: TenantPlanUpdate,
    session: SessionDep,
    redis: RedisDep,
    principal: SuperuserPrincipal,
) -> TenantAdminView:
    """Put a tenant on a plan of the catalogue (404 for an unknown tenant or plan). Recorded
    in the tenant's audit log."""
    tenant = await service.set_plan(session, redis, principal, tenant_id, body.plan)
    return TenantAdminView.model_validate(tenant)


@router.get("/health", response_model=PlatformHealth)
async def platform_health(
    session: SessionDep, redis: RedisDep, settings: SettingsDep, _: SuperuserPrincipal
) -> PlatformHealth:
    """Live workers, queue depth and pending per queue, scheduler replicas and leases."""
    return await service.platform_health(session, redis, settings)

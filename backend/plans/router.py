"""The plan catalogue: read by any member, written by platform administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, SuperuserPrincipal
from backend.core.openapi import AUTHENTICATED
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.plans import service
from backend.plans.schemas import PlanPublic, PlanUpdate

router = APIRouter(prefix="/api/v1", tags=["plans"], responses=AUTHENTICATED)

PlanName = Annotated[str, Path(min_length=1, max_length=20, pattern=r"^[a-z][a-z0-9-]*$")]


@router.get("/plans", response_model=list[PlanPublic])
async def list_plans(
    session: SessionDep, _: Principal = Authorized(Permission.profile_read)
) -> list[PlanPublic]:
    """The plans of the catalogue and their limits, in display order (``null``: unlimited)."""
    return await service.list_plans(session)


@router.put(
    "/admin/plans/{plan_name}",
    response_model=PlanPublic,
    responses={201: {"model": PlanPublic, "description": "A new plan was created"}},
)
async def save_plan(
    plan_name: PlanName,
    body: PlanUpdate,
    session: SessionDep,
    response: Response,
    _: SuperuserPrincipal,
) -> PlanPublic:
    """Create or replace a plan (platform administrators). Tenants on it get the new limits
    within seconds."""
    row, created = await service.save_plan(session, plan_name, body)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return service.public(row)

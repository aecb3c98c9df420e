"""/me and the members of the caller's tenant."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT, QUOTA
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.tenants import service
from backend.tenants.schemas import (
    MemberCreate,
    MemberPublic,
    MemberUpdate,
    MeResponse,
    TenantDetail,
)
from backend.users.schemas import UserPublic

router = APIRouter(prefix="/api/v1", tags=["tenants"], responses=AUTHENTICATED)


@router.get("/me", response_model=MeResponse)
async def me(
    session: SessionDep, principal: Principal = Authorized(Permission.profile_read)
) -> MeResponse:
    """The caller: user, current tenant and role in it."""
    tenant = await service.current_tenant(session, principal)
    return MeResponse(
        user=UserPublic(id=principal.user_id, email=principal.email),
        tenant=TenantDetail.model_validate(tenant),
        role=principal.role,
        auth="api_token" if principal.token_id else "session",
    )


@router.get("/members", response_model=list[MemberPublic])
async def list_members(
    session: SessionDep, principal: Principal = Authorized(Permission.members_read)
) -> list[MemberPublic]:
    """Members of the tenant and their roles."""
    return await service.list_members(session, principal)


@router.post(
    "/members",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberPublic,
    responses={**CONFLICT, **QUOTA},
)
async def add_member(
    body: MemberCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> MemberPublic:
    """Add an account to the tenant with a role at or below the caller's."""
    return await service.add_member(
        session, settings, principal, email=body.email, role=body.role, password=body.password
    )


@router.patch("/members/{user_id}", response_model=MemberPublic, responses={**BY_ID, **CONFLICT})
async def change_member_role(
    user_id: uuid.UUID,
    body: MemberUpdate,
    session: SessionDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> MemberPublic:
    """Change a member's role."""
    return await service.change_role(session, principal, user_id, body.role)


@router.delete(
    "/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**BY_ID, **CONFLICT},
)
async def remove_member(
    user_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> None:
    """Remove a member; their sessions and API tokens stop working at once."""
    await service.remove_member(session, principal, user_id)

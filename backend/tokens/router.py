"""Tenant API tokens."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized
from backend.core.openapi import AUTHENTICATED, BY_ID
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.tokens import service
from backend.tokens.schemas import ApiTokenCreate, ApiTokenCreated, ApiTokenPublic

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], responses=AUTHENTICATED)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiTokenCreated)
async def create_token(
    body: ApiTokenCreate,
    session: SessionDep,
    principal: Principal = Authorized(Permission.tokens_manage),
) -> ApiTokenCreated:
    """Create an API token. The secret is in this response only; it is stored hashed."""
    token, raw = await service.create_token(
        session, principal, name=body.name, role=body.role, expires_in_days=body.expires_in_days
    )
    return ApiTokenCreated(**ApiTokenPublic.model_validate(token).model_dump(), token=raw)


@router.get("", response_model=list[ApiTokenPublic])
async def list_tokens(
    session: SessionDep, principal: Principal = Authorized(Permission.tokens_read)
) -> list[ApiTokenPublic]:
    """The tenant's API tokens (never their secrets)."""
    return [ApiTokenPublic.model_validate(t) for t in await service.list_tokens(session, principal)]


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID)
async def revoke_token(
    token_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.tokens_manage),
) -> None:
    """Revoke an API token; it stops working on the next request."""
    await service.revoke_token(session, principal, token_id)

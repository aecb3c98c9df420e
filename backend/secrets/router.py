"""Tenant secrets. Values are write-only: no endpoint returns one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.secrets import service
from backend.secrets.schemas import SecretCreate, SecretPublic, SecretUpdate

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"], responses=AUTHENTICATED)

# Any name up to the limit; one that is not a secret's is simply not found.
SecretName = Annotated[str, Path(max_length=64)]


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SecretPublic, responses=CONFLICT
)
async def create_secret(
    body: SecretCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.secrets_write),
) -> SecretPublic:
    """Create a secret. The value is encrypted at once and never returned."""
    secret = await service.create_secret(
        session,
        settings,
        principal,
        name=body.name,
        value=body.value,
        description=body.description,
    )
    return SecretPublic.model_validate(secret)


@router.get("", response_model=list[SecretPublic])
async def list_secrets(
    session: SessionDep, principal: Principal = Authorized(Permission.secrets_read)
) -> list[SecretPublic]:
    """The tenant's secrets: names and metadata, never values."""
    return [SecretPublic.model_validate(s) for s in await service.list_secrets(session, principal)]


@router.get("/{secret_name}", response_model=SecretPublic, responses=BY_ID)
async def get_secret(
    secret_name: SecretName,
    session: SessionDep,
    principal: Principal = Authorized(Permission.secrets_read),
) -> SecretPublic:
    """One secret's metadata (never its value)."""
    return SecretPublic.model_validate(await service.get_secret(session, principal, secret_name))


@router.patch("/{secret_name}", response_model=SecretPublic, responses=BY_ID)
async def update_secret(
    secret_name: SecretName,
    body: SecretUpdate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.secrets_write),
) -> SecretPublic:
    """Set a secret's value (encrypted under a new data key) and/or its description."""
    secret = await service.update_secret(
        session, settings, principal, secret_name, value=body.value, description=body.description
    )
    return SecretPublic.model_validate(secret)


@router.delete("/{secret_name}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID)
async def delete_secret(
    secret_name: SecretName,
    session: SessionDep,
    principal: Principal = Authorized(Permission.secrets_write),
) -> None:
    """Delete a secret. Tasks that still reference it fail at dispatch, saying so."""
    await service.delete_secret(session, principal, secret_name)

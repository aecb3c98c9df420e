"""Tenant-hosted workers: their credentials and the tenant's connected workers."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.workers import service
from backend.workers.schemas import (
    ConnectedWorker,
    WorkerCredentialCreate,
    WorkerCredentialCreated,
    WorkerCredentialPublic,
)

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], responses=AUTHENTICATED)


@router.get("", response_model=list[ConnectedWorker])
async def list_workers(
    redis: RedisDep, principal: Principal = Authorized(Permission.workers_read)
) -> list[ConnectedWorker]:
    """Workers with a live heartbeat: the tenant's own (hosted), then the shared pool."""
    return await service.connected_workers(redis, principal)


@router.post(
    "/credentials", status_code=status.HTTP_201_CREATED, response_model=WorkerCredentialCreated
)
async def create_credential(
    body: WorkerCredentialCreate,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.workers_manage),
) -> WorkerCredentialCreated:
    """Create a credential for a tenant-hosted worker serving one queue. The credential is
    in this response only (`baton worker --credential ...`); only its hash is stored. From
    now on the queue is served by the tenant's own workers, not the shared pool."""
    row, secret = await service.create_credential(
        session,
        redis,
        settings,
        principal,
        name=body.name,
        queue=body.queue,
        expires_in_days=body.expires_in_days,
    )
    return WorkerCredentialCreated(
        **WorkerCredentialPublic.model_validate(row).model_dump(), credential=secret
    )


@router.get("/credentials", response_model=list[WorkerCredentialPublic])
async def list_credentials(
    session: SessionDep, principal: Principal = Authorized(Permission.workers_read)
) -> list[WorkerCredentialPublic]:
    """The tenant's worker credentials, newest first (never their secrets)."""
    rows = await service.list_credentials(session, principal)
    return [WorkerCredentialPublic.model_validate(r) for r in rows]


@router.delete(
    "/credentials/{credential_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID
)
async def revoke_credential(
    credential_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.workers_manage),
) -> None:
    """Revoke a credential: its Redis user is removed and its workers are disconnected."""
    await service.revoke_credential(session, redis, principal, credential_id)

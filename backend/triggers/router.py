"""A job's inbound webhook endpoints (/api/v1) and the endpoint they expose (/hooks)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID, errors
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.triggers import service
from backend.triggers.schemas import (
    DeliveryPublic,
    DeliveryReceipt,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"], responses=AUTHENTICATED)
# Called by other systems, authenticated by the URL's secret (and a signature if set).
hook_router = APIRouter(tags=["webhooks"])


@router.post(
    "/jobs/{job_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=BY_ID,
)
async def create_webhook(
    job_id: uuid.UUID,
    body: WebhookCreate,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> WebhookCreated:
    """Create a trigger endpoint for a job. The answer's ``token`` and ``url`` are shown
    once; the signing secret is named from the tenant's secrets (docs/notifications.md)."""
    endpoint, token = await service.create_endpoint(session, principal, job_id, body)
    public = WebhookPublic.model_validate(endpoint)
    return WebhookCreated(**public.model_dump(), token=token, url=service.hook_path(token))


@router.get("/jobs/{job_id}/webhooks", response_model=list[WebhookPublic], responses=BY_ID)
async def list_webhooks(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
) -> list[WebhookPublic]:
    """A job's trigger endpoints (their tokens are never shown again)."""
    endpoints = await service.list_endpoints(session, principal, job_id)
    return [WebhookPublic.model_validate(endpoint) for endpoint in endpoints]


@router.delete("/webhooks/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID)
async def delete_webhook(
    endpoint_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> None:
    """Delete a trigger endpoint; its URL answers 404 from then on."""
    await service.delete_endpoint(session, principal, endpoint_id)


@router.get(
    "/webhooks/{endpoint_id}/deliveries", response_model=list[DeliveryPublic], responses=BY_ID
)
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryPublic]:
    """An endpoint's newest deliveries: accepted, duplicate or refused, and why."""
    deliveries = await service.list_deliveries(
        session, principal, endpoint_id=endpoint_id, limit=limit
    )
    return [DeliveryPublic.model_validate(delivery) for delivery in deliveries]


@hook_router.post(
    "/hooks/{token}",
    status_code=status.HTTP_201_CREATED,
    response_model=DeliveryReceipt,
    responses=errors(400, 401, 403, 404, 409, 422, 429),
)
async def receive_webhook(
    token: Annotated[str, Path(min_length=1, max_length=200)],
    request: Request,
    response: Response,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> DeliveryReceipt:
    """Start a run of the endpoint's job with the params its mapping takes from the JSON
    body. ``Idempotency-Key`` (or GitHub's ``X-GitHub-Delivery``) makes a redelivery answer
    the first run (200, ``duplicate``); a signature, when the endpoint requires one, is
    checked on the raw body. Every delivery is recorded, refused ones too."""
    incoming = service.Incoming(
        token=token,
        body=await request.body(),
        headers=request.headers,
        source_ip=request.client.host if request.client else None,
    )
    receipt = await service.receive(session, redis, settings, incoming)
    if receipt.outcome == "duplicate":
        response.status_code = status.HTTP_200_OK
    return receipt

"""/api/v1/notification-channels, -rules and -deliveries (docs/notifications.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.notify import service, sla
from backend.notify.schemas import (
    ChannelCreate,
    ChannelPublic,
    DeliveryPublic,
    RuleCreate,
    RulePublic,
    SlaMissPublic,
)

router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=AUTHENTICATED)


@router.post(
    "/notification-channels", status_code=status.HTTP_201_CREATED, response_model=ChannelPublic
)
async def create_channel(
    body: ChannelCreate,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> ChannelPublic:
    """Create an email, Slack or signed-webhook channel; URLs, signing keys and SMTP
    passwords are named secrets of the tenant (422 if one does not exist)."""
    return ChannelPublic.model_validate(await service.create_channel(session, principal, body))


@router.get("/notification-channels", response_model=list[ChannelPublic])
async def list_channels(
    session: SessionDep, principal: Principal = Authorized(Permission.jobs_read)
) -> list[ChannelPublic]:
    """The tenant's channels."""
    channels = await service.list_channels(session, principal)
    return [ChannelPublic.model_validate(channel) for channel in channels]


@router.delete(
    "/notification-channels/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=BY_ID,
)
async def delete_channel(
    channel_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> None:
    """Delete a channel and the rules that use it."""
    await service.delete_channel(session, principal, channel_id)


@router.post(
    "/notification-channels/{channel_id}/test", response_model=DeliveryPublic, responses=BY_ID
)
async def test_channel(
    channel_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> DeliveryPublic:
    """Send a test notification now; the answer is its record with the response."""
    delivery = await service.send_test(session, settings, principal, channel_id)
    return DeliveryPublic.model_validate(delivery)


@router.post(
    "/notification-rules",
    status_code=status.HTTP_201_CREATED,
    response_model=RulePublic,
    responses=BY_ID,
)
async def create_rule(
    body: RuleCreate,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> RulePublic:
    """Send a job's (or, without job_id, every job's) events to a channel."""
    return RulePublic.model_validate(await service.create_rule(session, principal, body))


@router.get("/notification-rules", response_model=list[RulePublic])
async def list_rules(
    session: SessionDep, principal: Principal = Authorized(Permission.jobs_read)
) -> list[RulePublic]:
    """The tenant's rules."""
    return [
        RulePublic.model_validate(rule) for rule in await service.list_rules(session, principal)
    ]


@router.delete(
    "/notification-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID
)
async def delete_rule(
    rule_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> None:
    """Delete a rule."""
    await service.delete_rule(session, principal, rule_id)


@router.get("/notification-deliveries", response_model=list[DeliveryPublic], responses=BY_ID)
async def list_deliveries(
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
    channel_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryPublic]:
    """The newest notifications: pending, sent, failed or throttled, with the response."""
    deliveries = await service.list_deliveries(
        session, principal, channel_id=channel_id, limit=limit
    )
    return [DeliveryPublic.model_validate(delivery) for delivery in deliveries]


@router.get("/sla-misses", response_model=list[SlaMissPublic])
async def list_sla_misses(
    session: SessionDep,
    principal: Principal = Authorized(Permission.runs_read),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[SlaMissPublic]:
    """Runs that missed their job's SLA, newest first (each recorded once)."""
    misses = await sla.list_misses(session, principal.tenant_id, limit)
    return [SlaMissPublic.model_validate(miss) for miss in misses]

"""Dashboard page: settings - notification channels, rules, the notification log, and each
channel's test button. Channels and rules are created through the API
(docs/notifications.md); each action here calls ``notify.service`` with the permission of
the matching API route."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import NotFound
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.notify import service
from backend.web.csrf import CsrfChecked
from backend.web.render import page, redirect
from backend.web.session import WebAuthorized, web_allows

router = APIRouter(include_in_schema=False)

PAGE = "/settings/notifications"
RECENT = 50


@router.get(PAGE)
async def notifications(
    request: Request,
    session: SessionDep,
    tested: Annotated[str | None, Query(max_length=10)] = None,
    principal: Principal = WebAuthorized(Permission.jobs_read),
) -> Response:
    """Channels, rules and the newest notifications with their responses."""
    channels = await service.list_channels(session, principal)
    return page(
        request,
        "settings/notifications.html",
        {
            "principal": principal,
            "section": "notifications",
            "channels": channels,
            "channel_names": {channel.id: channel.name for channel in channels},
            "rules": await service.list_rules(session, principal),
            "deliveries": await service.list_deliveries(
                session, principal, channel_id=None, limit=RECENT
            ),
            "can_manage": web_allows(principal, Permission.jobs_write),
            "tested": tested,
        },
    )


@router.post(PAGE + "/{channel_id}/test")
async def test_channel(
    request: Request,
    channel_id: Annotated[str, Path(max_length=40)],
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """The test button: send a test notification now, then show the log with its result."""
    try:
        parsed = uuid.UUID(channel_id)
    except ValueError:
        raise NotFound("Notification channel not found") from None
    delivery = await service.send_test(session, settings, principal, parsed)
    return redirect(request, f"{PAGE}?tested={delivery.status}")

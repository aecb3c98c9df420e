"""Dashboard page: settings - notification channels and rules (create, delete), the
notification log, and each channel's test button.

Each action calls ``notify.service`` with the permission of the matching API route
(``jobs:write`` to change, ``jobs:read`` to look), and each form is parsed by the API's own
request models (``ChannelCreate``, ``RuleCreate``): a refused form shows the page again with
what was typed and why (422, or the service's 404/422), having changed nothing. Channel
URLs, signing keys and SMTP passwords are chosen by name from the tenant's secrets, as in
the API; their values never reach this page.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response

from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import NotFound
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.jobs import service as jobs_service
from backend.notify import service
from backend.notify.models import NotificationChannel, NotificationRule
from backend.notify.schemas import EVENTS, ChannelCreate, RuleCreate
from backend.secrets import service as secrets_service
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, FormState, Refused, form_page, submit
from backend.web.render import redirect
from backend.web.session import WebAuthorized, web_allows

router = APIRouter(include_in_schema=False)

PAGE = "/settings/notifications"
RECENT = 50
JOB_CHOICES = 200  # jobs offered in the rule form (newest first)
EVENT_LABELS = {
    "failure": "failure - a run failed",
    "recovery": "recovery - a run succeeded after a failure",
    "quota_cancelled": "quota - a run cancelled or refused by a plan limit",
    "sla_miss": "SLA miss - a run missed its job's SLA",
}
NOTICES = {
    "channel-created": "Channel created. Send a test to check it.",
    "channel-deleted": "Channel deleted, with its rules; its notifications stay in the log.",
    "rule-created": "Rule created.",
    "rule-deleted": "Rule deleted.",
}
TESTED = {"sent": "sent", "pending": "failed, retried later", "failed": "failed"}

FormText = Annotated[str, Form(max_length=1024)]
FormId = Annotated[str, Form(max_length=40)]
PathId = Annotated[str, Path(max_length=40)]
ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


def _uuid(raw: str, what: str) -> uuid.UUID:
    """An id from the path; anything that is not a UUID is not found (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} not found") from None


async def _notifications_page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    *,
    form: FormState = BLANK,
    form_for: str | None = None,
    notice: str | None = None,
    tested: str | None = None,
) -> Response:
    channels = await service.list_channels(session, principal)
    can_manage = web_allows(principal, Permission.jobs_write)
    jobs: list[Any] = []
    secret_names: list[str] = []
    if can_manage:
        jobs, _ = await jobs_service.list_jobs(session, principal, limit=JOB_CHOICES)
        secret_names = [s.name for s in await secrets_service.list_secrets(session, principal)]
    return form_page(
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
            "can_manage": can_manage,
            "jobs": jobs,
            "job_names": {job.id: job.name for job in jobs},
            "secret_names": secret_names,
            "events": EVENTS,
            "event_labels": EVENT_LABELS,
            "form_for": form_for,
            "tested": TESTED.get(tested or ""),
        },
        form=form,
        notice=NOTICES.get(notice or ""),
    )


@router.get(PAGE)
async def notifications(
    request: Request,
    session: SessionDep,
    tested: Annotated[str | None, Query(max_length=10)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
    principal: Principal = WebAuthorized(Permission.jobs_read),
) -> Response:
    """Channels, rules and the newest notifications with their responses; editors and
    above create and delete channels and rules here."""
    return await _notifications_page(request, session, principal, notice=notice, tested=tested)


def channel_body(fields: dict[str, str]) -> dict[str, Any]:
    """The ``POST /api/v1/notification-channels`` body a channel form stands for: empty
    fields are left out (the API's defaults apply), recipients are split on commas, spaces
    or lines, the STARTTLS box is a boolean."""
    body: dict[str, Any] = {"name": fields["name"].strip(), "kind": fields["kind"]}
    for name in ("url_secret", "signing_secret", "smtp_host", "smtp_username",
                 "smtp_password_secret", "mail_from", "smtp_port"):  # fmt: skip
        if fields[name].strip():
            body[name] = fields[name].strip()
    if fields["to"].strip():
        body["to"] = [a for a in ADDRESS_SEPARATORS.split(fields["to"].strip()) if a]
    body["smtp_starttls"] = fields["smtp_starttls"] in ("on", "true", "1")
    return body


@router.post(PAGE + "/channels")
async def create_channel(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    name: FormText = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    url_secret: FormText = "",
    signing_secret: FormText = "",
    to: Annotated[str, Form(max_length=4000)] = "",
    smtp_host: FormText = "",
    smtp_port: Annotated[str, Form(max_length=20)] = "",
    smtp_username: FormText = "",
    smtp_password_secret: FormText = "",
    smtp_starttls: Annotated[str, Form(max_length=10)] = "",
    mail_from: FormText = "",
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Create a channel (as ``POST /api/v1/notification-channels``)."""
    values = {
        "name": name, "kind": kind, "url_secret": url_secret, "signing_secret": signing_secret,
        "to": to, "smtp_host": smtp_host, "smtp_port": smtp_port, "smtp_username": smtp_username,
        "smtp_password_secret": smtp_password_secret, "smtp_starttls": smtp_starttls,
        "mail_from": mail_from,
    }  # fmt: skip

    async def create() -> NotificationChannel:
        body = ChannelCreate.model_validate(channel_body(values))
        return await service.create_channel(session, principal, body)

    outcome = await submit(session, create, values, service_fields=True)
    if isinstance(outcome, Refused):
        return await _notifications_page(
            request, session, principal, form=outcome, form_for="channel"
        )
    return redirect(request, f"{PAGE}?notice=channel-created")


@router.post(PAGE + "/channels/{channel_id}/delete")
async def delete_channel(
    request: Request,
    channel_id: PathId,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Delete a channel and its rules (as ``DELETE /api/v1/notification-channels/{id}``)."""
    await service.delete_channel(session, principal, _uuid(channel_id, "Notification channel"))
    return redirect(request, f"{PAGE}?notice=channel-deleted")


@router.post(PAGE + "/rules")
async def create_rule(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    channel_id: FormId = "",
    job_id: FormId = "",
    events: Annotated[list[str] | None, Form(max_length=10)] = None,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Create a rule (as ``POST /api/v1/notification-rules``); no job: every job."""
    chosen = [event[:40] for event in events or []]
    values = {"channel_id": channel_id, "job_id": job_id, "events": chosen}

    async def create() -> NotificationRule:
        body = RuleCreate.model_validate(
            {"channel_id": channel_id, "job_id": job_id or None, "events": chosen}
        )
        return await service.create_rule(session, principal, body)

    outcome = await submit(session, create, values)
    if isinstance(outcome, Refused):
        return await _notifications_page(request, session, principal, form=outcome, form_for="rule")
    return redirect(request, f"{PAGE}?notice=rule-created")


@router.post(PAGE + "/rules/{rule_id}/delete")
async def delete_rule(
    request: Request,
    rule_id: PathId,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Delete a rule (as ``DELETE /api/v1/notification-rules/{id}``)."""
    await service.delete_rule(session, principal, _uuid(rule_id, "Notification rule"))
    return redirect(request, f"{PAGE}?notice=rule-deleted")


@router.post(PAGE + "/{channel_id}/test")
async def test_channel(
    request: Request,
    channel_id: PathId,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """The test button: send a test notification now, then show the log with its result."""
    parsed = _uuid(channel_id, "Notification channel")
    delivery = await service.send_test(session, settings, principal, parsed)
    return redirect(request, f"{PAGE}?tested={delivery.status}")

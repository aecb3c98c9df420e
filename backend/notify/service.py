"""Notifications: a tenant's channels (email, Slack, signed webhook), the rules that send
run events to them, and their delivery.

Events come from finished runs (``backend/triggers/reactor.py`` consumes the outbox the
engine's finishing step writes and calls :func:`enqueue_for_run` in its own transaction):
``failure`` (a run failed), ``recovery`` (a run succeeded after the job's previous finished
run failed), ``quota_cancelled`` (a run cancelled because of a plan limit); and from runs a
plan limit refused before they existed (a scheduled fire, a webhook delivery, a job-to-job
trigger: the reactor consumes their outbox too and calls :func:`enqueue_for_refusal`), also
``quota_cancelled``. Each match of a rule queues one ``notification_deliveries`` row - at
most one per channel and event of a run or refusal (however many rules match; for runs a
unique index too), and at most one per channel, job and event within
``notification_throttle_seconds`` (later ones are logged as ``throttled``, not sent).

:func:`send_due` (the same loop) sends what is due; a failure is retried with exponential
backoff up to ``notification_max_attempts``; each try's response (or error) is kept.
Nothing is ever sent from the engine's transaction. Formats: docs/notifications.md.
"""

from __future__ import annotations

import json
import smtplib
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import NotFound, ValidationFailed
from backend.core.models import utcnow, uuid7
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.jobs.repository import JobRepository
from backend.notify import outbound
from backend.notify.models import NotificationChannel, NotificationDelivery, NotificationRule
from backend.notify.repository import ChannelRepository, DeliveryRepository, RuleRepository
from backend.notify.schemas import ChannelCreate, RuleCreate
from backend.secrets import crypto
from backend.secrets.repository import SecretRepository
from backend.secrets.service import sealed_of
from kernel.signatures import sign_stripe

log = structlog.get_logger(__name__)

SEND_BATCH = 20
EVENT_NAMES = {
    "failure": "run.failed",
    "recovery": "run.recovered",
    "quota_cancelled": "run.cancelled_by_quota",
    "sla_miss": "run.sla_missed",
    "test": "test",
}
# The payload ``event`` of a ``quota_cancelled`` notification for a run refused before it
# existed (``run`` is null, ``refusal`` says what was refused and why).
REFUSED_EVENT = "run.refused_by_quota"
QUOTA_EVENT = "quota_cancelled"
REFUSED_SOURCES = {
    "schedule": "a scheduled run",
    "webhook": "a webhook's run",
    "upstream": "a triggered run",
}


class SecretMissing(Exception):
    """A channel's secret does not exist (any more) or cannot be read."""


# ------------------------------------------------------------------------- channels, rules


async def _require_secrets(session: AsyncSession, tenant_id: uuid.UUID, names: list[str]) -> None:
    found = {s.name for s in await SecretRepository(session, tenant_id).by_names(names)}
    missing = [name for name in names if name not in found]
    if missing:
        raise ValidationFailed(
            f"No secret named {', '.join(missing)}: create it first",
            details=[{"loc": ["body"], "msg": f"no secret {name}"} for name in missing],
        )


async def create_channel(
    session: AsyncSession, principal: Principal, body: ChannelCreate
) -> NotificationChannel:
    """Create a channel; the secrets it names must exist (422)."""
    await _require_secrets(session, principal.tenant_id, body.secret_names())
    channel = NotificationChannel(
        tenant_id=principal.tenant_id, name=body.name, kind=body.kind, config=body.config(),
        created_by=principal.user_id,
    )  # fmt: skip
    await ChannelRepository(session, principal.tenant_id).add(channel)
    await audit.record_for(
        session, principal, "notification_channel.created", target_type="notification_channel",
        target_id=channel.id, details={"name": body.name, "kind": body.kind},
    )  # fmt: skip
    return channel


async def list_channels(session: AsyncSession, principal: Principal) -> list[NotificationChannel]:
    """The tenant's channels, oldest first."""
    return await ChannelRepository(session, principal.tenant_id).list_all()


async def get_channel(
    session: AsyncSession, principal: Principal, channel_id: uuid.UUID
) -> NotificationChannel:
    """One channel of the tenant; another tenant's is not found."""
    channel = await ChannelRepository(session, principal.tenant_id).get(id=channel_id)
    if channel is None:
        raise NotFound("Notification channel not found")
    return channel


async def delete_channel(
    session: AsyncSession, principal: Principal, channel_id: uuid.UUID
) -> None:
    """Delete a channel and its rules; its delivery log stays."""
    channel = await get_channel(session, principal, channel_id)
    await session.execute(
        text("DELETE FROM notification_rules WHERE tenant_id = :t AND channel_id = :c"),
        {"t": principal.tenant_id, "c": channel.id},
    )
    await session.delete(channel)
    await session.flush()
    await audit.record_for(
        session, principal, "notification_channel.deleted", target_type="notification_channel",
        target_id=channel.id, details={"name": channel.name},
    )  # fmt: skip


async def create_rule(
    session: AsyncSession, principal: Principal, body: RuleCreate
) -> NotificationRule:
    """Route events of one job (or of every job) to a channel; both must exist (404)."""
    await get_channel(session, principal, body.channel_id)
    jobs = JobRepository(session, principal.tenant_id)
    if body.job_id is not None and await jobs.get_active(body.job_id) is None:
        raise NotFound("Job not found")
    rule = NotificationRule(
        tenant_id=principal.tenant_id, channel_id=body.channel_id, job_id=body.job_id,
        events=sorted(set(body.events)), created_by=principal.user_id,
    )  # fmt: skip
    await RuleRepository(session, principal.tenant_id).add(rule)
    await audit.record_for(
        session, principal, "notification_rule.created", target_type="notification_rule",
        target_id=rule.id, details={"channel_id": str(body.channel_id), "events": rule.events},
    )  # fmt: skip
    return rule


async def list_rules(session: AsyncSession, principal: Principal) -> list[NotificationRule]:
    """The tenant's rules, oldest first."""
    return await RuleRepository(session, principal.tenant_id).list_all()


async def delete_rule(session: AsyncSession, principal: Principal, rule_id: uuid.UUID) -> None:
    """Delete a rule."""
    rule = await RuleRepository(session, principal.tenant_id).get(id=rule_id)
    if rule is None:
        raise NotFound("Notification rule not found")
    await session.delete(rule)
    await session.flush()
    await audit.record_for(
        session, principal, "notification_rule.deleted", target_type="notification_rule",
        target_id=rule.id,
    )  # fmt: skip


async def list_deliveries(
    session: AsyncSession, principal: Principal, *, channel_id: uuid.UUID | None, limit: int
) -> list[NotificationDelivery]:
    """The newest notifications (of one channel), with each one's last response."""
    if channel_id is not None:
        await get_channel(session, principal, channel_id)
    return await DeliveryRepository(session, principal.tenant_id).recent(
        channel_id=channel_id, limit=limit
    )


# --------------------------------------------------------------------------------- events


async def _previous_status(
    session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID, run_id: uuid.UUID,
    finished_at: datetime,
) -> str | None:  # fmt: skip
    row = await session.execute(
        text(
            "SELECT status FROM runs WHERE tenant_id = :t AND job_id = :j AND id <> :r "
            "AND finished_at IS NOT NULL AND finished_at <= :f "
            "ORDER BY finished_at DESC LIMIT 1"
        ),
        {"t": tenant_id, "j": job_id, "r": run_id, "f": finished_at},
    )
    found = row.scalar_one_or_none()
    return str(found) if found is not None else None


async def events_of(
    session: AsyncSession, tenant_id: uuid.UUID, *, run_id: uuid.UUID, job_id: uuid.UUID,
    status: str, reason: str | None, finished_at: datetime,
) -> list[str]:  # fmt: skip
    """The notification events a finished run raises."""
    if status == "failed":
        return ["failure"]
    if status == "cancelled" and reason and "quota" in reason.lower():
        return ["quota_cancelled"]
    if status == "succeeded":
        previous = await _previous_status(session, tenant_id, job_id, run_id, finished_at)
        if previous == "failed":
            return ["recovery"]
    return []


def _payload(
    event: str, tenant_id: uuid.UUID, job: dict[str, Any] | None, run: dict[str, Any] | None,
    refusal: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if refusal is not None:
        return {"event": REFUSED_EVENT, "tenant_id": str(tenant_id), "job": job, "run": None,
                "refusal": refusal}  # fmt: skip
    return {"event": EVENT_NAMES[event], "tenant_id": str(tenant_id), "job": job, "run": run}


async def enqueue_for_run(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, *, run_id: uuid.UUID,
    job_id: uuid.UUID, job_name: str, status: str, reason: str | None, finished_at: datetime,
    rules: list[NotificationRule] | None = None,
) -> int:  # fmt: skip
    """Queue the notifications a finished run's events call for (session scoped to the
    tenant); the number queued to be sent (throttled ones not counted). ``rules``: the
    job's rules when the caller has read them already (``RuleRepository.for_jobs``)."""
    if rules is None:
        rules = await RuleRepository(session, tenant_id).for_job(job_id)
    if not rules:
        return 0
    events = await events_of(session, tenant_id, run_id=run_id, job_id=job_id, status=status,
                             reason=reason, finished_at=finished_at)  # fmt: skip
    run = {"id": str(run_id), "status": status, "reason": reason,
           "finished_at": finished_at.isoformat()}  # fmt: skip
    return await enqueue(session, settings, tenant_id, events, rules, job_id, job_name, run)


async def enqueue_for_refusal(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, *, job_id: uuid.UUID,
    job_name: str, refusal: dict[str, Any], rules: list[NotificationRule] | None = None,
) -> int:  # fmt: skip
    """Queue the ``quota_cancelled`` notifications of a run a plan limit refused before it
    existed (session scoped to the tenant; ``refusal`` is the payload's ``refusal``); the
    number queued to be sent (throttled ones not counted). ``rules`` as for
    :func:`enqueue_for_run`."""
    if rules is None:
        rules = await RuleRepository(session, tenant_id).for_job(job_id)
    if not rules:
        return 0
    return await enqueue(
        session, settings, tenant_id, [QUOTA_EVENT], rules, job_id, job_name, None,
        refusal=refusal,
    )  # fmt: skip


async def enqueue(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, events: list[str],
    rules: list[NotificationRule], job_id: uuid.UUID, job_name: str, run: dict[str, Any] | None,
    *, refusal: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Queue one notification per event and channel of the matching rules (deduplicated per
    channel, run or refusal, and event; throttled per channel, job and event); the number
    queued to be sent. ``run`` None: a refusal (``refusal``), no run exists."""
    run_id = uuid.UUID(run["id"]) if run is not None else None
    deliveries = DeliveryRepository(session, tenant_id)
    now = utcnow()
    since = now - timedelta(seconds=settings.notification_throttle_seconds)
    queued = 0
    job = {"id": str(job_id), "name": job_name}
    for event in events:
        channels: set[uuid.UUID] = set()
        for rule in rules:
            if event not in rule.events or rule.channel_id in channels:
                continue
            channels.add(rule.channel_id)
            throttled = await deliveries.sent_lately(rule.channel_id, job_id, event, since)
            delivery_id = uuid7()
            payload = {**_payload(event, tenant_id, job, run, refusal),
                       "delivery_id": str(delivery_id)}  # fmt: skip
            statement = (
                insert(NotificationDelivery)
                .values(
                    tenant_id=tenant_id,
                    id=delivery_id,
                    channel_id=rule.channel_id,
                    rule_id=rule.id,
                    job_id=job_id,
                    run_id=run_id,
                    event=event,
                    status="throttled" if throttled else "pending",
                    attempts=0,
                    next_at=now,
                    payload=payload,
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(col(NotificationDelivery.id))
            )
            inserted = (await session.execute(statement)).scalar_one_or_none()
            if inserted is not None and not throttled:
                queued += 1
            elif inserted is not None:
                log.info("notify.throttled", tenant_id=str(tenant_id), job_id=str(job_id),
                         channel_id=str(rule.channel_id), notify_event=event)  # fmt: skip
    return queued


# ------------------------------------------------------------------------------- sending


async def _secret(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, name: str
) -> str:
    secret = await SecretRepository(session, tenant_id).get(name=name)
    if secret is None:
        raise SecretMissing(f"the secret {name} does not exist")
    try:
        return crypto.unseal(settings, tenant_id, name, sealed_of(secret))
    except crypto.SecretUnreadable:
        raise SecretMissing(f"the secret {name} cannot be read") from None


def _summary(payload: dict[str, Any]) -> str:
    job, run = payload.get("job") or {}, payload.get("run") or {}
    what = {
        "run.failed": "failed",
        "run.recovered": "recovered (succeeded after a failure)",
        "run.cancelled_by_quota": "was cancelled by a plan limit",
        "run.sla_missed": "missed its SLA",
    }.get(payload["event"])
    if payload["event"] == REFUSED_EVENT:
        refusal = payload.get("refusal") or {}
        source = REFUSED_SOURCES.get(str(refusal.get("source")), "a run")
        limit = refusal.get("limit") or "a plan limit"
        return f"Job {job.get('name')}: {source} was refused by the plan limit {limit}"
    if what is None:
        return "Test notification from Baton"
    return f"Job {job.get('name')}: run {str(run.get('id'))[:8]} {what}"


async def _deliver(
    session: AsyncSession, settings: Settings, channel: NotificationChannel,
    delivery: NotificationDelivery,
) -> outbound.Outcome:  # fmt: skip
    config, tenant_id, payload = channel.config, channel.tenant_id, delivery.payload
    if channel.kind == "email":
        password = None
        if config.get("smtp_password_secret"):
            password = await _secret(session, settings, tenant_id, config["smtp_password_secret"])
        server = outbound.SmtpServer(
            host=config["smtp_host"], port=int(config["smtp_port"]),
            username=config.get("smtp_username"), password=password,
            starttls=bool(config.get("smtp_starttls")), mail_from=config["mail_from"],
        )  # fmt: skip
        body = f"{_summary(payload)}\n\n{json.dumps(payload, indent=2)}\n"
        return await outbound.send_mail(
            settings, server, list(config["to"]), f"[Baton] {_summary(payload)}", body
        )
    url = await _secret(session, settings, tenant_id, config["url_secret"])
    if channel.kind == "slack":
        content = json.dumps({"text": f"[Baton] {_summary(payload)}"}).encode()
        headers = {"Content-Type": "application/json"}
    else:
        signing = await _secret(session, settings, tenant_id, config["signing_secret"])
        content = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Baton-Event": str(payload["event"]),
            "Baton-Delivery": str(delivery.id),
            "Baton-Signature": sign_stripe(signing, content, int(time.time())),
        }
    return await outbound.post(settings, url, content=content, headers=headers)


async def attempt(
    session: AsyncSession, settings: Settings, channel: NotificationChannel | None,
    delivery: NotificationDelivery,
) -> None:  # fmt: skip
    """Try one notification now and record the outcome: sent, retried later with
    exponential backoff, or failed (attempts used up, the channel or its address refused)."""
    now = utcnow()
    delivery.attempts += 1
    final = False
    try:
        if channel is None:
            final = True
            raise SecretMissing("the channel was deleted")
        outcome = await _deliver(session, settings, channel, delivery)
        delivery.response_code, delivery.response_body = outcome.status_code, outcome.body
        if 200 <= outcome.status_code < 300 or channel.kind == "email":
            delivery.status, delivery.sent_at, delivery.error = "sent", now, None
        else:
            delivery.error = f"HTTP {outcome.status_code}"
    except outbound.RefusedAddress as error:
        delivery.error, final = str(error)[:500], True
    except (SecretMissing, httpx.HTTPError, OSError, smtplib.SMTPException) as error:
        delivery.error = f"{type(error).__name__}: {error}"[:500]
    if delivery.status != "sent":
        if final or delivery.attempts >= settings.notification_max_attempts:
            delivery.status = "failed"
        else:
            backoff = settings.notification_retry_seconds * 2 ** (delivery.attempts - 1)
            delivery.next_at = now + timedelta(seconds=backoff)
    session.add(delivery)
    await session.flush()
    log.info("notify.attempted", tenant_id=str(delivery.tenant_id), delivery_id=str(delivery.id),
             status=delivery.status, attempts=delivery.attempts, error=delivery.error)  # fmt: skip


async def send_due(session: AsyncSession, settings: Settings, tenant_id: uuid.UUID) -> int:
    """Try the tenant's due notifications (session scoped to it); the number tried."""
    due = await DeliveryRepository(session, tenant_id).due(utcnow(), SEND_BATCH)
    channels = ChannelRepository(session, tenant_id)
    for delivery in due:
        await attempt(session, settings, await channels.get(id=delivery.channel_id), delivery)
    return len(due)


async def send_test(
    session: AsyncSession, settings: Settings, principal: Principal, channel_id: uuid.UUID
) -> NotificationDelivery:
    """The test button: send a ``test`` notification through the channel now and answer
    its record (sent, or the error; retried later like any other if it failed)."""
    channel = await get_channel(session, principal, channel_id)
    delivery = NotificationDelivery(
        tenant_id=principal.tenant_id, channel_id=channel.id, event="test",
        payload=_payload("test", principal.tenant_id, None, None),
    )  # fmt: skip
    delivery.payload["delivery_id"] = str(delivery.id)
    session.add(delivery)
    await attempt(session, settings, channel, delivery)
    return delivery

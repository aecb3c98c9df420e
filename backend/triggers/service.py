"""Inbound webhooks: a job's trigger endpoints and the deliveries they receive.

An endpoint's URL is ``/hooks/<token>``, the token ``bwh_<tenant hex>_<secret>``: the
tenant part lets the lookup run inside that tenant's row-level security scope (as API
tokens do), the secret is stored only hashed. Each delivery is recorded, accepted or
refused and why, in the request's transaction; a refusal is committed before it is
answered (``commit_side_effects``).

Order of checks on a delivery: endpoint found (else 404, not recorded: there is nothing
to record it under), tenant active, rate limits (the tenant's webhook deliveries per
minute and the plan's API requests per minute), signature, JSON payload, idempotency key
(a key seen before answers the earlier run: ``duplicate``), replay (a signature already
accepted is refused), then the run (the plan's run limits and the job's concurrency
policy apply). A delivery refused by a plan limit (``quota_exceeded``) is also announced
with ``runs_refused``, in the transaction that records it: the tenant's
``quota_cancelled`` notifications (``backend/triggers/reactor.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.db import scope_to_tenant
from backend.core.errors import (
    BadRequest,
    BatonError,
    Conflict,
    InvalidSignature,
    InvalidToken,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    TenantSuspended,
    ValidationFailed,
)
from backend.core.input_policy import value_problems
from backend.core.principal import Principal
from backend.core.security import make_tenant_token, parse_tenant_token
from backend.core.settings import Settings
from backend.jobs.repository import JobRepository
from backend.plans.service import cached_limits_of, count_api_request
from backend.runs.hooks import RefusedRun, runs_refused
from backend.runs.repository import RunRepository
from backend.runs.service import trigger_unattended
from backend.secrets import crypto
from backend.secrets.repository import SecretRepository
from backend.secrets.service import sealed_of
from backend.tenants.models import TenantStatus
from backend.tenants.repository import TenantDirectory
from backend.triggers.mapping import apply_mapping
from backend.triggers.models import WebhookDelivery, WebhookEndpoint
from backend.triggers.repository import DeliveryRepository, WebhookRepository
from backend.triggers.schemas import DeliveryReceipt, WebhookCreate
from kernel import signatures
from kernel.wire import keys

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "bwh"
MAX_IDEMPOTENCY_KEY = 160
RUN_TRIGGER = "webhook"


def hook_path(token: str) -> str:
    return f"/hooks/{token}"


async def _job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> None:
    if await JobRepository(session, principal.tenant_id).get_active(job_id) is None:
        raise NotFound("Job not found")


async def create_endpoint(
    session: AsyncSession, principal: Principal, job_id: uuid.UUID, body: WebhookCreate
) -> tuple[WebhookEndpoint, str]:
    """Create a trigger endpoint for a job; (endpoint, token). The token is shown once.
    The signing secret must exist in the tenant's secrets (422 otherwise)."""
    await _job(session, principal, job_id)
    if body.secret_name is not None:
        found = await SecretRepository(session, principal.tenant_id).get(name=body.secret_name)
        if found is None:
            raise ValidationFailed(
                f"No secret named {body.secret_name}: create it first",
                details=[{"loc": ["body", "secret_name"], "msg": "no such secret"}],
            )
    token = make_tenant_token(TOKEN_PREFIX, principal.tenant_id)
    _, token_hash = parse_tenant_token(TOKEN_PREFIX, token)
    endpoint = WebhookEndpoint(
        tenant_id=principal.tenant_id,
        job_id=job_id,
        name=body.name,
        token_hash=token_hash,
        token_prefix=f"{TOKEN_PREFIX}_…{token[-6:]}",
        signature=body.signature,
        secret_name=body.secret_name,
        tolerance_seconds=body.tolerance_seconds,
        mapping=dict(body.mapping),
        created_by=principal.user_id,
    )
    await WebhookRepository(session, principal.tenant_id).add(endpoint)
    await audit.record_for(
        session, principal, "webhook.created", target_type="webhook", target_id=endpoint.id,
        details={"job_id": str(job_id), "name": body.name, "signature": body.signature},
    )  # fmt: skip
    return endpoint, token


async def list_endpoints(
    session: AsyncSession, principal: Principal, job_id: uuid.UUID
) -> list[WebhookEndpoint]:
    """A job's trigger endpoints, oldest first (404 for a job not found)."""
    await _job(session, principal, job_id)
    return await WebhookRepository(session, principal.tenant_id).for_job(job_id)


async def get_endpoint(
    session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """One endpoint of the principal's tenant; another tenant's is not found."""
    endpoint = await WebhookRepository(session, principal.tenant_id).get(id=endpoint_id)
    if endpoint is None:
        raise NotFound("Webhook not found")
    return endpoint


async def delete_endpoint(
    session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID
) -> None:
    """Delete an endpoint: its URL answers 404 from now on; its deliveries stay listed."""
    endpoint = await get_endpoint(session, principal, endpoint_id)
    await WebhookRepository(session, principal.tenant_id).delete(endpoint)
    await audit.record_for(
        session, principal, "webhook.deleted", target_type="webhook", target_id=endpoint.id,
        details={"job_id": str(endpoint.job_id), "name": endpoint.name},
    )  # fmt: skip


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    *,
    endpoint_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """The newest deliveries of one endpoint (or of every endpoint of a job)."""
    if endpoint_id is not None:
        await get_endpoint(session, principal, endpoint_id)
    return await DeliveryRepository(session, principal.tenant_id).recent(
        endpoint_id=endpoint_id, job_id=job_id, limit=limit
    )


@dataclass(frozen=True)
class Incoming:
    """One request to ``/hooks/<token>``, as received (headers looked up lower-case)."""

    token: str
    body: bytes
    headers: Mapping[str, str]
    source_ip: str | None = None


async def receive(
    session: AsyncSession, redis: Redis, settings: Settings, incoming: Incoming
) -> DeliveryReceipt:
    """Verify a delivery and start the endpoint's job with the mapped params; every
    delivery to an existing endpoint is recorded, a refusal too (then raised)."""
    try:
        tenant_id, token_hash = parse_tenant_token(TOKEN_PREFIX, incoming.token)
    except InvalidToken:
        raise NotFound("Webhook not found") from None
    await scope_to_tenant(session, tenant_id)
    endpoint = await WebhookRepository(session, tenant_id).get(token_hash=token_hash)
    if endpoint is None:
        raise NotFound("Webhook not found")
    delivery = WebhookDelivery(
        tenant_id=tenant_id,
        endpoint_id=endpoint.id,
        job_id=endpoint.job_id,
        outcome="refused",
        status_code=0,
        body_bytes=len(incoming.body),
        source_ip=(incoming.source_ip or "")[:64] or None,
    )
    try:
        return await _accept(session, redis, settings, endpoint, delivery, incoming)
    except BatonError as error:
        delivery.outcome = "refused"
        delivery.reason = error.message[:300]
        delivery.status_code = error.status_code
        delivery.signature_digest = None
        delivery.run_id = None
        session.add(delivery)
        await session.flush()
        log.info("webhooks.refused", tenant_id=str(tenant_id), endpoint_id=str(endpoint.id),
                 status=error.status_code, reason=delivery.reason)  # fmt: skip
        if isinstance(error, QuotaExceeded):
            await runs_refused.fire(session, tenant_id, [_refused(error, endpoint, delivery)])
        error.commit_side_effects = True
        raise


def _refused(
    error: QuotaExceeded, endpoint: WebhookEndpoint, delivery: WebhookDelivery
) -> RefusedRun:
    """The refusal the ``quota_cancelled`` notifications tell of (docs/notifications.md)."""
    details = error.details if isinstance(error.details, dict) else {}
    return RefusedRun(
        job_id=endpoint.job_id,
        source="webhook",
        limit=details.get("limit"),
        reason=error.message,
        refused_at=delivery.received_at,
        details={
            "webhook_id": str(endpoint.id),
            "webhook": endpoint.name,
            "webhook_delivery_id": str(delivery.id),
            "status_code": error.status_code,
        },
    )


async def _check_rate(redis: Redis, settings: Settings, tenant_id: uuid.UUID) -> None:
    now = time.time()
    minute = int(now // 60)
    key = keys.webhook_deliveries(str(tenant_id), minute)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
    except RedisError as error:
        raise ServiceUnavailable("Webhooks are unavailable: Redis did not answer") from error
    if int(count) > settings.webhook_deliveries_per_minute:
        raise RateLimited(
            f"More than {settings.webhook_deliveries_per_minute} webhook deliveries this minute",
            retry_after=max(1, int((minute + 1) * 60 - now)),
        )


async def _signing_secret(
    session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint
) -> str:
    name = endpoint.secret_name or ""
    secret = await SecretRepository(session, endpoint.tenant_id).get(name=name)
    if secret is None:
        raise InvalidSignature(f"cannot verify: the signing secret {name} does not exist")
    try:
        return crypto.unseal(settings, endpoint.tenant_id, name, sealed_of(secret))
    except crypto.SecretUnreadable:
        log.error("webhooks.secret_unreadable", tenant_id=str(endpoint.tenant_id), secret=name)
        raise InvalidSignature(f"cannot verify: the signing secret {name} is unreadable") from None


def _payload(body: bytes) -> object:
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("The body is not JSON") from None
    problems = list(value_problems(payload, ["body"]))
    if problems:
        raise ValidationFailed("The body holds values Baton cannot store", details=problems)
    return payload


async def _accept(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    endpoint: WebhookEndpoint,
    delivery: WebhookDelivery,
    incoming: Incoming,
) -> DeliveryReceipt:
    tenant_id = endpoint.tenant_id
    tenant = await TenantDirectory(session).get(tenant_id)
    if tenant is None or tenant.status != TenantStatus.active:
        raise TenantSuspended("The tenant is not active")
    await _check_rate(redis, settings, tenant_id)
    limits = await cached_limits_of(session, settings, tenant.plan)
    await count_api_request(redis, limits, tenant_id=tenant_id)

    if endpoint.signature != "none":
        secret = await _signing_secret(session, settings, endpoint)
        try:
            header = signatures.verify(
                endpoint.signature,
                secret,
                incoming.headers,
                incoming.body,
                now=time.time(),
                tolerance_seconds=endpoint.tolerance_seconds,
            )
        except signatures.SignatureRefused as error:
            raise InvalidSignature(f"Signature refused: {error}") from None
        delivery.signature_digest = hashlib.sha256(header.encode()).hexdigest()
    payload = _payload(incoming.body)

    key = incoming.headers.get("idempotency-key") or incoming.headers.get("x-github-delivery")
    run_key: str | None = None
    if key:
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise BadRequest(f"The idempotency key is longer than {MAX_IDEMPOTENCY_KEY}")
        delivery.idempotency_key = key
        run_key = f"wh:{endpoint.id.hex}:{key}"
        seen = await RunRepository(session, tenant_id).by_idempotency_keys(
            endpoint.job_id, [run_key]
        )
        if run_key in seen:
            return await _answered(session, delivery, seen[run_key].id, created=False)

    delivery.outcome, delivery.status_code = "accepted", 201
    if delivery.signature_digest is not None:
        try:  # the unique index on accepted signatures settles concurrent replays too
            async with session.begin_nested():
                await DeliveryRepository(session, tenant_id).add(delivery)
        except IntegrityError:
            raise Conflict("Replay refused: this signature was already accepted") from None

    params = apply_mapping(endpoint.mapping, payload)
    async with session.begin_nested():
        run, created = await trigger_unattended(
            session,
            redis,
            tenant_id,
            endpoint.job_id,
            params=params,
            idempotency_key=run_key,
            trigger=RUN_TRIGGER,
            limits=limits,
            source={"endpoint_id": str(endpoint.id), "delivery_id": str(delivery.id)},
        )
    return await _answered(session, delivery, run.id, created=created)


async def _answered(
    session: AsyncSession, delivery: WebhookDelivery, run_id: uuid.UUID, *, created: bool
) -> DeliveryReceipt:
    delivery.outcome = "accepted" if created else "duplicate"
    delivery.status_code = 201 if created else 200
    delivery.run_id = run_id
    if not created:
        delivery.signature_digest = None  # a redelivery may carry the same signature
    session.add(delivery)
    await session.flush()
    log.info("webhooks.delivered", tenant_id=str(delivery.tenant_id), run_id=str(run_id),
             endpoint_id=str(delivery.endpoint_id), outcome=delivery.outcome)  # fmt: skip
    return DeliveryReceipt(delivery_id=delivery.id, outcome=delivery.outcome, run_id=run_id)

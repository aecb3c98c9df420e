"""The audit log: record events in the caller's transaction, read them, verify the chain.

Each tenant's events form a hash chain: an event's ``hash`` covers its own fields and the
previous event's hash, so editing, deleting or re-ordering a row breaks every link after
it. Appends take a per-tenant transaction-level advisory lock, so concurrent requests
extend the chain one after another and ``seq`` has no gaps.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.models import AuditEvent
from backend.audit.repository import AuditRepository
from backend.core.models import utcnow
from backend.core.principal import Actor, Principal, RequestOrigin

GENESIS_HASH = "0" * 64


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    """SHA-256 over the previous hash and a canonical JSON form of the event."""
    body = {
        "tenant_id": str(event.tenant_id),
        "seq": event.seq,
        "id": str(event.id),
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


async def record(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    origin: RequestOrigin | None = None,
    outcome: str = "success",
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the tenant's chain in the current transaction (flush only)."""
    repo = AuditRepository(session, tenant_id)
    await repo.lock_chain()
    head = await repo.chain_head()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    origin = origin or RequestOrigin()
    event = AuditEvent(
        tenant_id=tenant_id,
        seq=seq,
        occurred_at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        outcome=outcome,
        ip=origin.ip,
        user_agent=(origin.user_agent or "")[:512] or None,
        request_id=origin.request_id,
        details=details or {},
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = event_hash(prev_hash, event)
    return await repo.add(event)


async def record_for(
    session: AsyncSession,
    principal: Principal,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record an event done by an authenticated principal in its own tenant."""
    return await record(
        session,
        tenant_id=principal.tenant_id,
        actor=principal.actor,
        action=action,
        origin=principal.origin,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )


async def list_events(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    cursor: int | None,
    action: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None = None,
) -> tuple[list[AuditEvent], int | None]:
    """A page of the tenant's events, newest first, and the cursor of the next page."""
    events = await AuditRepository(session, principal.tenant_id).page(
        limit=limit + 1,
        before_seq=cursor,
        action=action,
        actor=actor,
        outcome=outcome,
        since=since,
        until=until,
    )
    next_cursor = events[limit - 1].seq if len(events) > limit else None
    return events[:limit], next_cursor


@dataclass(frozen=True)
class ChainReport:
    tenant_id: uuid.UUID
    events_checked: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


async def verify_chain(session: AsyncSession, tenant_id: uuid.UUID) -> ChainReport:
    """Walk the tenant's chain in order and report the first broken link, if any.

    The session must be scoped to ``tenant_id`` (row-level security).
    """
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    async for event in AuditRepository(session, tenant_id).iterate_chain():
        if event.seq != expected_seq:
            return ChainReport(tenant_id, checked, expected_seq, "event missing")
        if event.prev_hash != prev_hash:
            return ChainReport(tenant_id, checked, event.seq, "prev_hash does not match")
        if event_hash(prev_hash, event) != event.hash:
            return ChainReport(tenant_id, checked, event.seq, "content does not match its hash")
        checked += 1
        expected_seq, prev_hash = expected_seq + 1, event.hash
    return ChainReport(tenant_id, checked)

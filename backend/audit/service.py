"""The audit log: record events in the caller's transaction, read them, verify the chain.

Each tenant's events form a hash chain: an event's ``hash`` covers its own fields and the
previous event's hash, so editing, deleting or re-ordering a row breaks every link after
it. Appends take a per-tenant transaction-level advisory lock, so concurrent requests
extend the chain one after another and ``seq`` has no gaps.

The hot path (triggers) must not queue behind that lock: it appends with
:func:`pending_row` into ``audit_pending`` (no lock, no chain-head read, in the same
statement as its runs) and the sealer (:mod:`backend.audit.sealer`) chains those rows in
order, in batches, off the request path, under the same lock - so the chain is one chain.
Reading the log seals first (read-your-writes); verifying reports what is not sealed yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.models import AuditCheckpoint, AuditEvent
from backend.audit.repository import AuditRepository
from backend.core.db import after_commit
from backend.core.models import utcnow
from backend.core.principal import Actor, Principal, RequestOrigin

GENESIS_HASH = "0" * 64
SEAL_BATCH = 1000  # pending events chained per statement batch


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


def pending_row(
    *,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    origin: RequestOrigin | None = None,
    outcome: str = "success",
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``audit_pending`` row (JSON-ready) for an event sealed later, off the request path.

    The caller inserts it in its own transaction (the trigger does so in the statement that
    inserts its runs) and calls :func:`seal_soon` so the sealer picks it up after commit.
    """
    origin = origin or RequestOrigin()
    return {
        "tenant_id": str(tenant_id),
        "event_id": str(uuid.uuid4()),
        "occurred_at": utcnow().isoformat(),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_label": actor.label,
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id) if target_id is not None else None,
        "outcome": outcome,
        "ip": origin.ip,
        "user_agent": (origin.user_agent or "")[:512] or None,
        "request_id": origin.request_id,
        "details": details or {},
    }


def seal_soon(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """After the session commits, have this process's sealer chain the tenant's pending
    events (not awaited: the request answers without waiting for the seal)."""
    from backend.audit.sealer import sealer_for  # the sealer imports this module

    engine = session.bind

    async def kick() -> None:
        sealer_for(engine).kick(tenant_id)  # type: ignore[arg-type]

    after_commit(session, kick)


_APPEND_PENDING = text(
    """
INSERT INTO audit_pending (tenant_id, event_id, occurred_at, actor_type, actor_id, actor_label,
    action, target_type, target_id, outcome, ip, user_agent, request_id, details)
SELECT tenant_id, event_id, occurred_at, actor_type, actor_id, actor_label, action,
    target_type, target_id, outcome, ip, user_agent, request_id, details
FROM jsonb_populate_recordset(NULL::audit_pending, CAST(:rows AS jsonb))
"""
)


async def append_pending(
    session: AsyncSession, tenant_id: uuid.UUID, rows: list[dict[str, Any]]
) -> None:
    """Append :func:`pending_row` events in one statement; sealed after the commit."""
    if not rows:
        return
    await session.execute(_APPEND_PENDING, {"rows": json.dumps(rows, separators=(",", ":"))})
    seal_soon(session, tenant_id)


_PENDING = text("SELECT * FROM audit_pending WHERE tenant_id = :tenant ORDER BY id LIMIT :limit")
_RELEASE = text("SELECT audit_release_sealed(:tenant, :ids)")


async def seal_pending(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Chain the tenant's committed pending events, oldest first, in the current
    transaction (scoped to the tenant); the number sealed.

    Takes the chain lock only when something is pending, so readers can call it first.
    Each sealed row names its pending row; the pending rows are then released by
    ``audit_release_sealed``, which deletes only rows whose sealed copy is identical.
    """
    params = {"tenant": tenant_id, "limit": SEAL_BATCH}
    if not (await session.execute(_PENDING, params)).first():
        return 0
    repo = AuditRepository(session, tenant_id)
    await repo.lock_chain()
    sealed = 0
    while True:
        # Read again under the lock: another sealer may have taken them meanwhile.
        pending = (await session.execute(_PENDING, params)).mappings().all()
        if not pending:
            return sealed
        head = await repo.chain_head()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        rows: list[dict[str, Any]] = []
        for row in pending:
            event = AuditEvent(
                tenant_id=tenant_id,
                seq=seq,
                id=row["event_id"],
                occurred_at=row["occurred_at"],
                actor_type=row["actor_type"],
                actor_id=row["actor_id"],
                actor_label=row["actor_label"],
                action=row["action"],
                target_type=row["target_type"],
                target_id=row["target_id"],
                outcome=row["outcome"],
                ip=row["ip"],
                user_agent=row["user_agent"],
                request_id=row["request_id"],
                details=row["details"],
                prev_hash=prev_hash,
                hash="",
                pending_id=row["id"],
            )
            event.hash = prev_hash = event_hash(prev_hash, event)
            rows.append({c.name: getattr(event, c.name) for c in AuditEvent.__table__.columns})  # type: ignore[attr-defined]
            seq += 1
        await session.execute(insert(AuditEvent), rows)
        await session.execute(_RELEASE, {"tenant": tenant_id, "ids": [r["id"] for r in pending]})
        sealed += len(pending)
        if len(pending) < SEAL_BATCH:
            return sealed


async def count_pending(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """The tenant's events not sealed into the chain yet."""
    result = await session.execute(
        text("SELECT count(*) FROM audit_pending WHERE tenant_id = :tenant"), {"tenant": tenant_id}
    )
    return int(result.scalar_one())


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
    """A page of the tenant's events, newest first, and the cursor of the next page.

    Pending events are sealed first, so a caller reads its own triggers' events."""
    await seal_pending(session, principal.tenant_id)
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
    unsealed: int = 0  # events appended but not chained yet (the sealer runs behind)

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def checkpoint_key(kek: bytes) -> bytes:
    """The key that signs audit checkpoints, derived from a secrets key-encryption key (so
    it rotates with it and needs no setting of its own)."""
    return hmac.new(kek, b"baton audit checkpoint v1", hashlib.sha256).digest()


def checkpoint_keys(keks: Mapping[str, bytes]) -> dict[str, bytes]:
    """Checkpoint keys by key id, from the key-encryption keys (current and previous)."""
    return {key_id: checkpoint_key(kek) for key_id, kek in keks.items()}


def checkpoint_signature(key: bytes, tenant_id: uuid.UUID, seq: int, prev_hash: str) -> str:
    """HMAC-SHA256 over what a checkpoint vouches for: the chain of ``tenant_id`` goes on
    at ``seq`` from ``prev_hash``."""
    message = f"{tenant_id}:{seq}:{prev_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


_CUT = text("SELECT audit_cut(:tenant, :seq, :before, :key_id, :signature)")
_CUT_POINT = text(
    """
    SELECT max(seq) + 1 AS seq FROM (
        SELECT seq FROM audit_events
         WHERE tenant_id = :tenant AND occurred_at < :before
         ORDER BY seq LIMIT :batch
    ) AS old
    """
)


async def cut_chain(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    before: datetime,
    key_id: str,
    key: bytes,
    batch: int = 10_000,
) -> int:
    """Retention: delete up to ``batch`` of the tenant's oldest sealed events that occurred
    before ``before``, leaving a signed checkpoint where the kept chain starts; how many
    went. The head of the chain is always kept (the next event links to it).

    Takes the chain lock (the cut and an append never interleave). The deletion itself is
    ``audit_cut``'s (migration 0013): the runtime role has no DELETE on the log.
    """
    repo = AuditRepository(session, tenant_id)
    await repo.lock_chain()
    head = await repo.chain_head()
    if head is None:
        return 0
    point = (
        await session.execute(_CUT_POINT, {"tenant": tenant_id, "before": before, "batch": batch})
    ).scalar_one()
    if point is None:
        return 0
    seq = min(int(point), head[0])  # never past the head
    prev = (
        await session.exec(
            select(AuditEvent.hash).where(
                col(AuditEvent.tenant_id) == tenant_id, col(AuditEvent.seq) == seq - 1
            )
        )
    ).first()
    if prev is None:  # nothing before it any more: already cut here
        return 0
    signature = checkpoint_signature(key, tenant_id, seq, prev)
    removed = (
        await session.execute(
            _CUT,
            {
                "tenant": tenant_id,
                "seq": seq,
                "before": before,
                "key_id": key_id,
                "signature": signature,
            },
        )
    ).scalar_one()
    return int(removed or 0)


async def _chain_start(
    session: AsyncSession, tenant_id: uuid.UUID, keys: Mapping[str, bytes] | None
) -> tuple[int, str, str | None]:
    """Where the kept chain starts: (seq, prev_hash, why it cannot be trusted or None).

    A chain starts at 1 from the genesis hash, or - after retention cut it - at the latest
    checkpoint, whose signature must check out under the key it names (``keys``: key id
    -> checkpoint key; None skips the signature, e.g. a reader without the keys)."""
    checkpoint = (
        await session.exec(
            select(AuditCheckpoint)
            .where(col(AuditCheckpoint.tenant_id) == tenant_id)
            .order_by(col(AuditCheckpoint.seq).desc())
            .limit(1)
        )
    ).first()
    if checkpoint is None:
        return 1, GENESIS_HASH, None
    if keys is not None:
        key = keys.get(checkpoint.key_id)
        if key is None:
            return checkpoint.seq, checkpoint.prev_hash, "checkpoint signed by an unknown key"
        expected = checkpoint_signature(key, tenant_id, checkpoint.seq, checkpoint.prev_hash)
        if not hmac.compare_digest(expected, checkpoint.signature):
            return checkpoint.seq, checkpoint.prev_hash, "checkpoint signature does not match"
    return checkpoint.seq, checkpoint.prev_hash, None


async def verify_chain(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    checkpoint_keys: Mapping[str, bytes] | None = None,
) -> ChainReport:
    """Walk the tenant's chain in order and report the first broken link, if any.

    The session must be scoped to ``tenant_id`` (row-level security). Verifying writes
    nothing: events still waiting for the sealer are counted in ``unsealed``, not checked.
    A chain that retention cut starts at its latest signed checkpoint
    (``checkpoint_keys``, see :func:`_chain_start`); one that starts anywhere else is
    broken ("event missing").
    """
    unsealed = await count_pending(session, tenant_id)
    expected_seq, prev_hash, untrusted = await _chain_start(session, tenant_id, checkpoint_keys)
    if untrusted is not None:
        return ChainReport(tenant_id, 0, expected_seq, untrusted, unsealed)
    checked = 0
    async for event in AuditRepository(session, tenant_id).iterate_chain(after=expected_seq - 1):
        if event.seq != expected_seq:
            return ChainReport(tenant_id, checked, expected_seq, "event missing", unsealed)
        if event.prev_hash != prev_hash:
            return ChainReport(tenant_id, checked, event.seq, "prev_hash does not match", unsealed)
        if event_hash(prev_hash, event) != event.hash:
            return ChainReport(
                tenant_id, checked, event.seq, "content does not match its hash", unsealed
            )
        checked += 1
        expected_seq, prev_hash = expected_seq + 1, event.hash
    return ChainReport(tenant_id, checked, unsealed=unsealed)

"""Tenant-hosted workers: credentials (shown once, stored hashed, expiring, revocable) and
the tenant's connected workers.

A credential is one Redis ACL user limited to its tenant's keys for one queue (see
``acl.py``). Creating one moves that queue off the shared pool: the tenant leaves the
queue's discovery set, and the engine keeps it out while an active credential exists, so
only the tenant's own workers run its tasks there. Revoking or expiring the last one hands
the queue back to the shared pool.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.admin.health import live_workers
from backend.audit import service as audit
from backend.core.db import after_commit
from backend.core.errors import NotFound, ServiceUnavailable
from backend.core.models import utcnow
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.workers import acl
from backend.workers.models import WorkerCredential
from backend.workers.repository import WorkerCredentialRepository
from backend.workers.schemas import ConnectedWorker
from kernel.credential import WorkerCredential as CredentialString
from kernel.secrets import queue_transit_key
from kernel.wire import keys
from kernel.wire.protocol import read_heartbeat
from kernel.wire.streams import as_text

log = structlog.get_logger(__name__)

# Hosted workers that have not beaten for this long leave the tenant's worker index.
FORGET_WORKERS_AFTER_SECONDS = 3600


def acl_user(credential: WorkerCredential) -> acl.TenantWorkerUser:
    """The Redis user a credential row stands for."""
    return acl.TenantWorkerUser(
        username=credential.redis_user,
        secret_hash=credential.secret_hash,
        tenant_id=str(credential.tenant_id),
        queue=credential.queue,
    )


def worker_redis_address(settings: Settings) -> str | None:
    """The Redis address put into credentials: ``worker_redis_url``, else ``redis_url``
    without its user and password (those are the engine's)."""
    url = settings.worker_redis_url or settings.redis_url
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


async def create_credential(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    principal: Principal,
    *,
    name: str,
    queue: str,
    expires_in_days: int | None,
) -> tuple[WorkerCredential, str]:
    """Create a worker credential for one queue; returns the row and the credential string
    (shown once). Its Redis user is made after the commit."""
    credential_id = uuid.uuid4()
    secret = CredentialString(
        tenant_id=str(principal.tenant_id),
        queue=queue,
        redis_user=f"bw-{credential_id.hex}",
        redis_password=secrets.token_urlsafe(32),
        redis_url=worker_redis_address(settings),
        transit_keys=queue_transit_keys(settings, str(principal.tenant_id), queue),
    )
    row = WorkerCredential(
        tenant_id=principal.tenant_id,
        id=credential_id,
        name=name,
        queue=queue,
        redis_user=secret.redis_user,
        secret_hash=secret.password_hash(),
        created_by=principal.user_id,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    await WorkerCredentialRepository(session, principal.tenant_id).add(row)
    await audit.record_for(
        session,
        principal,
        "worker_credential.created",
        target_type="worker_credential",
        target_id=row.id,
        details={"name": name, "queue": queue},
    )
    user = acl_user(row)

    async def provision() -> None:
        await acl.set_tenant_worker_user(redis, user)
        # The queue is the tenant's own now: the shared pool stops discovering it.
        await redis.srem(keys.queue_tenants(queue), user.tenant_id)

    after_commit(session, provision)
    return row, secret.encode()


async def list_credentials(session: AsyncSession, principal: Principal) -> list[WorkerCredential]:
    """Every worker credential of the tenant, newest first (never their secrets)."""
    return await WorkerCredentialRepository(session, principal.tenant_id).list_all()


async def revoke_credential(
    session: AsyncSession, redis: Redis, principal: Principal, credential_id: uuid.UUID
) -> None:
    """Revoke a credential: after the commit its Redis user is removed and its connections
    are killed, so its workers stop reading at once.

    Revoking again removes the Redis user again (a no-op when it is gone already), so a
    revocation whose Redis step failed can be retried at once; the engine's sweep retries
    it anyway until the removal is confirmed (``redis_removed_at``). If Redis fails here the
    revocation stays committed and the caller gets a 503 saying so.
    """
    repo = WorkerCredentialRepository(session, principal.tenant_id)
    row = await repo.get(id=credential_id)
    if row is None:
        raise NotFound("Worker credential not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        await session.flush()
        await audit.record_for(
            session,
            principal,
            "worker_credential.revoked",
            target_type="worker_credential",
            target_id=row.id,
        )
    still_hosted = row.queue in await repo.hosted_queues()
    username, queue, tenant = row.redis_user, row.queue, str(row.tenant_id)

    async def unprovision() -> None:
        try:
            await acl.remove_tenant_worker_user(redis, username)
            if not still_hosted:  # the shared pool serves the queue again
                await redis.sadd(keys.queue_tenants(queue), tenant)
        except RedisError as error:
            log.error("workers.credential.unprovision_failed", user=username, error=str(error))
            raise ServiceUnavailable(
                "The credential is revoked, but its Redis user could not be removed yet: "
                "the engine keeps retrying, or revoke it again."
            ) from error

    after_commit(session, unprovision)


async def connected_workers(redis: Redis, principal: Principal) -> list[ConnectedWorker]:
    """The tenant's own workers with a live heartbeat, then the shared pool's (by alias:
    the pool's host names are the platform's business)."""
    now = time.time()
    tenant = str(principal.tenant_id)
    index = keys.tenant_workers(tenant)
    await redis.zremrangebyscore(index, "-inf", now - FORGET_WORKERS_AFTER_SECONDS)
    names = [as_text(n) for n in cast(list[str], await redis.zrange(index, 0, 999))]
    hosted: list[ConnectedWorker] = []
    if names:
        values = await redis.mget([keys.tenant_worker_heartbeat(tenant, n) for n in names])
        for name, value in zip(names, values, strict=True):
            info = read_heartbeat(value)
            if info is not None:  # no key: it stopped (or its beat expired)
                hosted.append(_connected(name, info, hosted=True))
    shared = [
        ConnectedWorker(
            name="shared-" + hashlib.sha256(w.name.encode()).hexdigest()[:10],
            hosted=False,
            queues=w.queues,
            version=w.version,
            concurrency=w.concurrency,
            running=w.running,
            last_heartbeat_at=w.last_heartbeat_at,
        )
        for w in await live_workers(redis, now=now)
    ]
    return sorted(hosted, key=lambda w: w.name) + sorted(shared, key=lambda w: w.name)


def _connected(name: str, info: dict[str, Any], *, hosted: bool) -> ConnectedWorker:
    return ConnectedWorker(
        name=name,
        hosted=hosted,
        queues=[str(q) for q in info.get("queues", [])],
        version=str(info["version"]) if info.get("version") else None,
        concurrency=int(info.get("concurrency", 0)),
        running=int(info.get("running", 0)),
        last_heartbeat_at=datetime.fromtimestamp(float(info.get("at", 0)), UTC),
    )


def queue_transit_keys(settings: Settings, tenant_id: str, queue: str) -> dict[str, str]:
    """The keys that open this tenant queue's secrets in transit, by key id (base64url):
    derived from every pool key still accepted, so a rotation does not strand the worker,
    and never the pool key itself."""
    return {
        key_id: base64.urlsafe_b64encode(queue_transit_key(key, tenant_id, queue)).decode()
        for key_id, key in settings.worker_transit_keys.items()
    }

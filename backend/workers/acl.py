"""Redis ACL users by role, so Redis itself enforces who may touch which keys.

- **engine** (the engine and the API): every ``baton:*`` key and channel, every command
  but the dangerous ones (FLUSHALL, CONFIG, KEYS, DEBUG ...), plus what managing worker
  users takes: ``ACL SETUSER/DELUSER/GETUSER/SAVE`` and ``CLIENT KILL``. Whoever may run
  ``ACL SETUSER`` may grant anything, so this password is as sensitive as Redis's own.
- **shared pool** workers: the discovery sets (read), every tenant's dispatch streams,
  every events stream (XADD only), their heartbeats, the global cancel channel and the
  cancelled-attempt markers (read only); only the commands ``worker/runner.py`` sends.
- **tenant-hosted** workers, one user per credential: their tenant's stream of their queue,
  its events stream (XADD only), its hosted-worker heartbeats, its cancel channel and its
  cancelled-attempt markers (read only).
  Key names keep the tenant hash tag (``baton:{<tenant>}:...``), so the patterns are exact.

Tenant-hosted users are made by the API after the credential's row commits, removed on
revocation (``CLIENT KILL USER`` ends their connections at once) and restored from
PostgreSQL when the engine reconciles a Redis that lost its data. PostgreSQL is the truth
for removal too: the engine's sweep removes the user of every revoked or expired
credential whose removal is not yet confirmed (``redis_removed_at``), so an expiry, or a
revocation whose Redis step failed, is carried out within a sweep interval. ``ACL SAVE``
follows every change when Redis has an ``aclfile``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from backend.core.settings import Settings
from kernel.runtime.redis import create_redis
from kernel.wire import keys

log = structlog.get_logger(__name__)

# Connection housekeeping (redis-py: SELECT for the URL's database, PING for health
# checks). AUTH is always allowed; redis-py ignores a refused CLIENT SETINFO (and Redis
# before 7.2 does not know the command, so naming it would fail there).
_CONNECTION = ("+ping", "+select")
_STREAM_READ = ("+xreadgroup", "+xack", "+xclaim", "+xautoclaim", "+xgroup|create")
_PUBSUB = ("+subscribe", "+unsubscribe")

ENGINE_RULES = (
    "~baton:*",
    "resetchannels",  # Redis 6.2 starts a user with every channel; 7 with none
    "&baton:*",
    "+@all",
    "-@dangerous",
    "+acl|setuser",
    "+acl|deluser",
    "+acl|getuser",
    "+acl|save",
    "+client|kill",
)

SHARED_WORKER_RULES = (
    "%R~" + keys.queue_tenants("*"),
    "~" + keys.queue_stream("*", "*"),
    "~" + keys.worker_heartbeat("*"),
    "%R~" + keys.cancelled_attempt("*", "*", "*"),
    "resetchannels",
    "&" + keys.cancel_channel(),
    "-@all",
    *_CONNECTION,
    *_STREAM_READ,
    *_PUBSUB,
    "+smembers",
    "+scard",  # polled with the reads: a changed count means new streams to read
    "+set",
    "+del",
    "+exists",
    # A selector: the events streams take XADD and nothing else (Redis 7.0 lets XAUTOCLAIM
    # and XCLAIM through on a write-only pattern, so the pattern alone would not do).
    f"(%W~{keys.events_stream('*')} +xadd)",
)


def tenant_worker_rules(tenant_id: str, queue: str) -> tuple[str, ...]:
    """What one tenant-hosted worker credential may do: its tenant's keys only.

    Tenant ids are UUIDs and queue names ``[a-z0-9_-]``, so no glob character can widen
    these patterns.
    """
    return (
        "~" + keys.queue_stream(tenant_id, queue),
        "~" + keys.tenant_workers(tenant_id),
        "~" + keys.tenant_worker_heartbeat(tenant_id, "*"),
        "%R~" + keys.cancelled_attempt(tenant_id, "*", "*"),
        "resetchannels",
        "&" + keys.tenant_cancel_channel(tenant_id),
        "-@all",
        *_CONNECTION,
        *_STREAM_READ,
        *_PUBSUB,
        "+set",
        "+del",
        "+zadd",
        "+exists",
        f"(%W~{keys.events_stream(tenant_id)} +xadd)",  # its events stream: XADD only
    )


@dataclass(frozen=True)
class TenantWorkerUser:
    """A tenant-hosted worker credential as Redis sees it."""

    username: str
    secret_hash: str  # SHA-256 hex of the password: ``ACL SETUSER ... #<hash>``
    tenant_id: str
    queue: str


async def set_tenant_worker_user(
    redis: Redis, user: TenantWorkerUser, *, save: bool = True
) -> None:
    """Create (or reset to exactly these rules) a credential's Redis user."""
    rules = (
        "reset",
        "on",
        f"#{user.secret_hash}",
        *tenant_worker_rules(user.tenant_id, user.queue),
    )
    await set_user(redis, user.username, rules)
    if save:
        await _save(redis)


async def remove_tenant_worker_user(redis: Redis, username: str) -> None:
    """Remove a credential's Redis user and end its connections at once.

    Switched off first so the worker cannot log in again between the kill and the delete.
    """
    try:
        await redis.execute_command("ACL", "SETUSER", username, "off")
        await redis.execute_command("CLIENT", "KILL", "USER", username)
    except ResponseError as error:  # no such user: already gone
        log.info("workers.acl.kill_skipped", user=username, error=str(error))
    await redis.execute_command("ACL", "DELUSER", username)
    await _save(redis)


async def restore_tenant_worker_users(redis: Redis, users: Iterable[TenantWorkerUser]) -> int:
    """Set every active credential's user again (Redis restarted without its ACL)."""
    count = 0
    for user in users:
        await set_tenant_worker_user(redis, user, save=False)
        count += 1
    if count:
        await _save(redis)
    return count


async def provision_roles(admin_url: str, settings: Settings) -> list[str]:
    """``baton redis provision-acl``: set the engine's and the shared workers' users."""
    assert settings.redis_engine_password and settings.redis_worker_password
    redis = create_redis(admin_url)
    try:
        for name, password, rules in (
            (settings.redis_engine_user, settings.redis_engine_password, ENGINE_RULES),
            (settings.redis_worker_user, settings.redis_worker_password, SHARED_WORKER_RULES),
        ):
            await set_user(redis, name, ("reset", "on", f">{password}", *rules))
        await _save(redis)
    finally:
        await redis.aclose()
    return [settings.redis_engine_user, settings.redis_worker_user]


async def set_user(redis: Redis, name: str, rules: tuple[str, ...]) -> None:
    """``ACL SETUSER name rules...``. A Redis before 7.0 has no selectors and no read-only
    or write-only patterns (``%R~``, ``%W~``): there those keys are granted read-write and
    a selector's commands join the user's own (the embedded development server is Redis
    6.2; production should run Redis 7, and the compose file does)."""
    try:
        await redis.execute_command("ACL", "SETUSER", name, *rules)
    except ResponseError as error:
        if not any(rule[0] in "%(" for rule in rules):
            raise
        log.warning("workers.acl.redis_before_7", user=name, error=str(error))
        await redis.execute_command("ACL", "SETUSER", name, *_without_selectors(rules))


def _without_selectors(rules: tuple[str, ...]) -> list[str]:
    plain: list[str] = []
    for rule in rules:
        for part in rule.strip("()").split() if rule.startswith("(") else [rule]:
            plain.append("~" + part.split("~", 1)[1] if part.startswith("%") else part)
    return plain


async def _save(redis: Redis) -> None:
    """Persist the users when Redis keeps them in an aclfile (else they live in memory and
    the engine restores tenant users from PostgreSQL)."""
    try:
        await redis.execute_command("ACL", "SAVE")
    except ResponseError as error:
        if "not configured to use an acl file" not in str(error).lower():
            raise

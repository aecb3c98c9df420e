"""Platform administration (superusers only): tenants, their usage and state, platform health.

The API (``backend.admin.router``) and the admin console (``backend.web.admin``) call the
same functions here. Reads inside a tenant (usage) and writes to its audit log scope the
transaction to that tenant for a moment and then back to the administrator's own, so
row-level security stays in force throughout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import structlog
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.admin import health
from backend.admin.repository import usage_of
from backend.admin.schemas import PlatformHealth, SchedulerLease, TenantUsage
from backend.audit import service as audit
from backend.auth import service as auth_service
from backend.core.cursor import decode_position, encode_position
from backend.core.db import after_commit, scope_to_tenant, scope_to_user
from backend.core.errors import Conflict, NotFound
from backend.core.models import utcnow
from backend.core.principal import Principal, RequestOrigin
from backend.core.security import check_password_policy, hash_password
from backend.core.settings import Settings
from backend.dispatch.signals import mark_tenant_due
from backend.plans.service import require_plan
from backend.schedules.service import drop_fires_of_suspended
from backend.tenants.models import Tenant, TenantStatus
from backend.tenants.repository import TenantDirectory, memberships_of_user
from backend.users.models import User
from backend.users.repository import RefreshTokenRepository, UserRepository

USAGE_WINDOW = timedelta(hours=24)

log = structlog.get_logger(__name__)


async def list_tenants(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Tenant], str | None]:
    """A page of every tenant, newest first, and the cursor of the next page."""
    after = decode_position(cursor) if cursor is not None else None
    tenants = await TenantDirectory(session).page(limit=limit + 1, after=after)
    last = tenants[limit - 1] if len(tenants) > limit else None
    next_cursor = encode_position(last.created_at, last.id) if last else None
    return tenants[:limit], next_cursor


async def tenant_usage(
    session: AsyncSession, principal: Principal, tenants: Sequence[Tenant]
) -> dict[uuid.UUID, TenantUsage]:
    """Jobs, runs in the last 24 hours and running tasks of each tenant (one query each)."""
    since = utcnow() - USAGE_WINDOW
    usage = {}
    for tenant in tenants:
        await scope_to_tenant(session, tenant.id)
        usage[tenant.id] = await usage_of(session, tenant.id, since=since)
    await scope_to_tenant(session, principal.tenant_id)
    return usage


async def suspend_tenant(
    session: AsyncSession, principal: Principal, tenant_id: uuid.UUID
) -> Tenant:
    """Suspend a tenant: its users can no longer log in, refresh a session or use an API
    token (``auth`` refuses a tenant that is not active), the engine starts none of its
    tasks (running ones finish) and its schedules' ticks are skipped with the reason. A
    no-op if it is suspended."""
    tenant = await _tenant(session, tenant_id)
    if tenant.id == principal.tenant_id:
        raise Conflict("You cannot suspend the tenant you are logged in to; it would lock you out")
    return await _set_status(session, principal, tenant, TenantStatus.suspended)


async def resume_tenant(
    session: AsyncSession, redis: Redis, principal: Principal, tenant_id: uuid.UUID
) -> Tenant:
    """Make a suspended tenant active again; its users' sessions and tokens work at once,
    and the engine is told (after commit) to admit the tasks that waited."""
    tenant = await _tenant(session, tenant_id)
    was_suspended = tenant.status != TenantStatus.active
    tenant = await _set_status(session, principal, tenant, TenantStatus.active)
    if was_suspended:

        async def wake_engine() -> None:
            await mark_tenant_due(redis, tenant_id)

        after_commit(session, wake_engine)
    return tenant


async def set_plan(
    session: AsyncSession, redis: Redis, principal: Principal, tenant_id: uuid.UUID, plan: str
) -> Tenant:
    """Put a tenant on another plan of the catalogue (404 for an unknown plan); its limits
    apply within seconds. Recorded in the tenant's audit log; the engine is told so a
    larger concurrency admits waiting tasks."""
    tenant = await _tenant(session, tenant_id)
    await require_plan(session, plan)
    if tenant.plan == plan:
        return tenant
    previous = tenant.plan
    tenant.plan = plan
    session.add(tenant)
    await session.flush()
    await scope_to_tenant(session, tenant.id)
    await audit.record(
        session,
        tenant_id=tenant.id,
        actor=principal.actor,
        origin=principal.origin,
        action="tenant.plan_changed",
        target_type="tenant",
        target_id=tenant.id,
        details={"from": previous, "to": plan, "by": "platform_admin"},
    )
    await scope_to_tenant(session, principal.tenant_id)

    async def wake_engine() -> None:
        await mark_tenant_due(redis, tenant_id)

    after_commit(session, wake_engine)
    return tenant


async def _tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await TenantDirectory(session).lock(tenant_id)
    if tenant is None:
        raise NotFound("Tenant not found")
    return tenant


async def _set_status(
    session: AsyncSession, principal: Principal, tenant: Tenant, status: TenantStatus
) -> Tenant:
    """Change the state and record it in the tenant's own audit log, the administrator as
    the actor (the tenant's admins see who suspended them and when)."""
    if tenant.status == status:
        return tenant
    previous = tenant.status
    tenant.status = status
    session.add(tenant)
    await session.flush()
    await scope_to_tenant(session, tenant.id)
    if status == TenantStatus.suspended:
        await drop_fires_of_suspended(session, tenant.id)
    await audit.record(
        session,
        tenant_id=tenant.id,
        actor=principal.actor,
        origin=principal.origin,
        action=f"tenant.{'suspended' if status == TenantStatus.suspended else 'resumed'}",
        target_type="tenant",
        target_id=tenant.id,
        details={"from": previous, "to": status, "by": "platform_admin"},
    )
    await scope_to_tenant(session, principal.tenant_id)
    return tenant


async def platform_health(
    session: AsyncSession, redis: Redis, settings: Settings
) -> PlatformHealth:
    """Live workers, queue depth and pending per queue, scheduler replicas and leases."""
    now = time.time()
    held, truncated = await health.scheduler_leases(redis)
    tenants = await TenantDirectory(session).get_many({lease.tenant_id for lease in held})
    return PlatformHealth(
        checked_at=utcnow(),
        workers=await health.live_workers(redis, now=now),
        queues=await health.queue_depths(redis),
        scheduler_replicas=await health.scheduler_replicas(
            redis, now=now, lease_seconds=settings.scheduler_lease_seconds
        ),
        scheduler_leases=[
            SchedulerLease(
                tenant_id=lease.tenant_id,
                tenant_slug=tenants[lease.tenant_id].slug if lease.tenant_id in tenants else None,
                replica=lease.replica,
                fencing_token=lease.fencing_token,
                expires_in_ms=lease.expires_in_ms,
            )
            for lease in held
        ],
        leases_truncated=truncated,
    )


async def ensure_account(
    session: AsyncSession, settings: Settings, *, email: str, password: str
) -> User:
    """The account of ``email``, created (with an own tenant to log in to) if missing."""
    user = await UserRepository(session).get_by_email(email)
    if user is None:
        result = await auth_service.signup(
            session,
            settings,
            email=email,
            password=password,
            tenant_name="Platform",
            origin=RequestOrigin(),
        )
        user = result.user
    return user


async def promote_superuser(owner_session: AsyncSession, email: str) -> bool:
    """Make an existing account a platform administrator; False if there is none.

    ``owner_session`` must be connected as the owner role: the runtime role the API uses
    cannot change the superuser flag (it has no UPDATE grant on that column).
    """
    user = await UserRepository(owner_session).get_by_email(email)
    if user is None:
        return False
    user.is_superuser = True
    owner_session.add(user)
    await owner_session.flush()
    return True


async def set_platform_admin_password(
    owner_session: AsyncSession, settings: Settings, email: str, password: str
) -> bool:
    """Set a platform administrator's password; False if ``email`` is no administrator.

    ``owner_session`` must be connected as the owner role: the database refuses the
    runtime role this change on a superuser's row (migration 0020). Every session of the
    account ends, as after a password reset."""
    check_password_policy(settings, password)
    user = await UserRepository(owner_session).get_by_email(email.strip().lower())
    if user is None or not user.is_superuser:
        return False
    user.password_hash = await hash_password(settings, password)
    owner_session.add(user)
    await owner_session.flush()
    await scope_to_user(owner_session, user.id)
    for membership, _ in await memberships_of_user(owner_session, user.id):
        await scope_to_tenant(owner_session, membership.tenant_id)
        await RefreshTokenRepository(owner_session, membership.tenant_id).revoke_user(user.id)
    log.info("admin.platform_admin_password_set", user_id=str(user.id))
    return True


async def ensure_demo_tenant(session: AsyncSession, settings: Settings) -> bool:
    """Seed the demo tenant and its owner for ``baton dev``; False if they exist already.
    (``baton dev`` then makes the demo user a platform administrator, as the owner role.)"""
    if await UserRepository(session).get_by_email(settings.demo_email) is not None:
        return False
    await auth_service.signup(
        session,
        settings,
        email=settings.demo_email,
        password=settings.demo_password,
        tenant_name="Demo",
        origin=RequestOrigin(),
    )
    return True

"""Plan limits: where they come from and the one check every domain calls.

With ``BATON_BILLING=none`` (on-prem) a tenant's limits come from the configuration
(``BATON_PLAN_LIMITS`` per plan, concurrency and weight defaulting to
``BATON_TENANT_MAX_CONCURRENT_TASKS``/``BATON_TENANT_WEIGHT``, anything else unlimited);
otherwise from its plan's row in ``plans``. A reached limit raises ``QuotaExceeded`` (one
error code, ``quota_exceeded``); crossing 80 % of one logs ``quota.warning``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.errors import NotFound, QuotaExceeded, ServiceUnavailable
from backend.core.models import utcnow
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.plans.catalog import LIMITS, WARNING_FRACTION
from backend.plans.models import PlanRow
from backend.plans.repository import PlanRepository
from backend.plans.schemas import PlanLimits, PlanPublic, PlanUpdate
from kernel.wire import keys

log = structlog.get_logger(__name__)

# The API-rate check runs on every request: its limits are re-read at most this often.
LIMITS_TTL_SECONDS = 5.0
# A day's API-request counter outlives the day long enough for the meter to flush it.
API_DAY_TTL_SECONDS = 3 * 24 * 3600


@dataclass(frozen=True)
class Limits:
    """One plan's effective limits (``None`` or absent: unlimited)."""

    plan: str
    values: Mapping[str, int | None] = field(default_factory=dict)

    @classmethod
    def of_principal(cls, principal: Principal) -> Limits:
        """The limits resolved when the caller authenticated."""
        return cls(principal.plan, principal.limits)

    def of(self, name: str) -> int | None:
        return self.values.get(name)


def _from_configuration(settings: Settings, plan: str) -> Limits:
    configured = settings.plan_limits.get(plan, {})
    values: dict[str, int | None] = {name: configured.get(name) for name in LIMITS}
    values["max_concurrent_tasks"] = (
        values["max_concurrent_tasks"] or settings.tenant_max_concurrent_tasks
    )
    values["weight"] = values["weight"] or settings.tenant_weight
    return Limits(plan, values)


def _from_row(settings: Settings, row: PlanRow) -> Limits:
    values: dict[str, int | None] = {name: getattr(row, name) for name in LIMITS}
    values["max_concurrent_tasks"] = (
        values["max_concurrent_tasks"] or settings.tenant_max_concurrent_tasks
    )
    values["weight"] = values["weight"] or settings.tenant_weight
    return Limits(row.name, values)


async def limits_of(session: AsyncSession, settings: Settings, plan: str) -> Limits:
    """The limits of ``plan`` as this installation applies them. A hosted tenant on a plan
    that has no row (deleted or renamed) falls back to the configuration."""
    if settings.billing == "none":
        return _from_configuration(settings, plan)
    row = await PlanRepository(session).get(plan)
    return _from_configuration(settings, plan) if row is None else _from_row(settings, row)


async def plan_limits(
    session: AsyncSession, settings: Settings, plans: set[str]
) -> dict[str, Limits]:
    """Limits of several plans in one query (the engine's admission reads them so)."""
    if settings.billing == "none" or not plans:
        return {p: _from_configuration(settings, p) for p in plans}
    rows = await PlanRepository(session).get_many(plans)
    return {
        p: _from_row(settings, rows[p]) if p in rows else _from_configuration(settings, p)
        for p in plans
    }


_cache: dict[tuple[int, str], tuple[float, Limits]] = {}


async def cached_limits_of(session: AsyncSession, settings: Settings, plan: str) -> Limits:
    """``limits_of``, remembered for LIMITS_TTL_SECONDS per settings object and plan."""
    key = (id(settings), plan)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    limits = await limits_of(session, settings, plan)
    _cache[key] = (now + LIMITS_TTL_SECONDS, limits)
    return limits


# ------------------------------------------------------------------------------ periods


def month_start(now: datetime) -> datetime:
    """The start of the calendar month (UTC) that holds ``now``: monthly limits' period."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


# ------------------------------------------------------------------------------ the check


def require(
    limits: Limits,
    name: str,
    *,
    usage: int,
    adding: int = 1,
    resets_at: datetime | None,
    tenant_id: uuid.UUID,
    status_code: int = 402,
    retry_after: int | None = None,
) -> None:
    """Refuse with ``quota_exceeded`` when ``usage + adding`` would pass the limit ``name``;
    log ``quota.warning`` when it crosses 80 % of it. ``adding=0``: refuse once the usage
    has reached the limit (a consumption measured after the fact, like task-seconds)."""
    allowed = limits.of(name)
    if allowed is None:
        return
    after = usage + adding
    if (adding and after > allowed) or (not adding and usage >= allowed):
        log.info(
            "quota.exceeded", tenant_id=str(tenant_id), limit=name, usage=usage, allowed=allowed
        )
        raise QuotaExceeded(
            name,
            allowed=allowed,
            usage=usage,
            resets_at=resets_at.isoformat() if resets_at else None,
            status_code=status_code,
            retry_after=retry_after,
        )
    threshold = WARNING_FRACTION * allowed
    if usage < threshold <= after:
        log.warning(
            "quota.warning", tenant_id=str(tenant_id), limit=name, usage=after, allowed=allowed
        )


async def count_api_request(redis: Redis, limits: Limits, *, tenant_id: uuid.UUID) -> None:
    """Count one API request of the tenant for the day (metering) and the minute (Redis
    counters), and
    refuse it with 429 ``quota_exceeded`` past the plan's requests per minute."""
    now = time.time()
    minute = int(now // 60)
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    limited = limits.of("api_requests_per_minute") is not None
    try:
        # One round trip: the day's counter (metering) and, when limited, the minute's.
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(keys.api_requests_day(str(tenant_id), day))
            pipe.expire(keys.api_requests_day(str(tenant_id), day), API_DAY_TTL_SECONDS)
            if limited:
                pipe.incr(keys.api_requests(str(tenant_id), minute))
                pipe.expire(keys.api_requests(str(tenant_id), minute), 120)
            answers = await pipe.execute()
    except RedisError as error:
        raise ServiceUnavailable("Rate limiting is unavailable: Redis did not answer") from error
    if not limited:
        return
    count = answers[2]
    reset = (minute + 1) * 60
    require(
        limits,
        "api_requests_per_minute",
        usage=int(count) - 1,
        resets_at=datetime.fromtimestamp(reset, UTC),
        tenant_id=tenant_id,
        status_code=429,
        retry_after=max(1, int(reset - now)),
    )


# ------------------------------------------------------------------------------ the catalogue


def public(row: PlanRow) -> PlanPublic:
    return PlanPublic(
        name=row.name,
        title=row.title,
        position=row.position,
        limits=PlanLimits.model_validate(row),
    )


async def list_plans(session: AsyncSession) -> list[PlanPublic]:
    """Every plan of the catalogue, in display order."""
    return [public(row) for row in await PlanRepository(session).all()]


async def save_plan(session: AsyncSession, name: str, update: PlanUpdate) -> tuple[PlanRow, bool]:
    """Create or replace the plan ``name``; (row, created). Applies to every tenant on it
    within LIMITS_TTL_SECONDS (the engine's quota cache and the API-rate cache)."""
    plans = PlanRepository(session)
    row = await plans.get(name)
    created = row is None
    if row is None:
        row = PlanRow(name=name, title=update.title)
    row.title = update.title
    row.position = update.position
    for limit, value in update.limits.model_dump().items():
        setattr(row, limit, value)
    row.updated_at = utcnow()
    saved = await plans.save(row)
    # This process applies the change at once; other processes within LIMITS_TTL_SECONDS.
    for key in [k for k in _cache if k[1] == name]:
        del _cache[key]
    return saved, created


async def require_plan(session: AsyncSession, name: str) -> PlanRow:
    """The plan ``name``, or 404."""
    row = await PlanRepository(session).get(name)
    if row is None:
        raise NotFound("Plan not found")
    return row

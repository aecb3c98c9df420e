"""SLA checks: ``sla: {max_duration, finish_by, timezone}`` in a job's spec.

A run's deadline is its start time (``run_at``) plus ``max_duration``, and/or the first
``finish_by`` wall-clock time in ``timezone`` after its start time (a run starting at 05:00
must be done by 06:00 the same day; one starting at 07:00 by 06:00 the next day); the
earlier one counts. A run that is still unfinished past its deadline, or finished after
it, misses: one ``sla_misses`` row (its primary key is the run, so a miss is recorded,
counted in ``baton_sla_misses_total`` and notified as ``sla_miss`` exactly once).

The reactor loop runs :func:`check_slas` for every tenant at each sweep; it reads the
tenant's jobs that have an SLA, then their unfinished runs and those finished within the
last hour that have no miss recorded yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import after_commit
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.jobs.spec import duration_seconds
from backend.notify.models import SlaMiss
from backend.notify.repository import RuleRepository
from backend.notify.service import enqueue
from kernel.metrics import SLA_MISSES, TENANTS

log = structlog.get_logger(__name__)

RECENTLY_FINISHED = timedelta(hours=1)

_SLA_JOBS = text(
    "SELECT j.id, j.name, v.spec -> 'sla' FROM jobs j JOIN job_versions v "
    "ON v.tenant_id = j.tenant_id AND v.job_id = j.id AND v.version = j.current_version "
    "WHERE j.tenant_id = :tenant AND j.deleted_at IS NULL AND v.spec ? 'sla'"
)
_CANDIDATES = text(
    "SELECT r.id, r.job_id, r.run_at, r.finished_at, r.status FROM runs r "
    "WHERE r.tenant_id = :tenant AND r.job_id = ANY(:jobs) "
    "AND (r.finished_at IS NULL OR r.finished_at > :recent) "
    "AND NOT EXISTS (SELECT 1 FROM sla_misses m WHERE m.tenant_id = r.tenant_id "
    "AND m.run_id = r.id)"
)


def finish_by_deadline(start: datetime, finish_by: str, timezone: str) -> datetime:
    """The first ``finish_by`` (HH:MM) in ``timezone`` after ``start`` (an aware instant)."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    hour, minute = (int(part) for part in finish_by.split(":"))
    candidate = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour, minute),
                                     tzinfo=zone)  # fmt: skip
    return candidate


def deadline(sla: dict[str, Any], start: datetime) -> tuple[str, datetime]:
    """(kind, instant) of the earlier of the SLA's deadlines for a run started at ``start``."""
    found: list[tuple[datetime, str]] = []
    if sla.get("max_duration"):
        found.append((start + timedelta(seconds=duration_seconds(sla["max_duration"])),
                      "max_duration"))  # fmt: skip
    if sla.get("finish_by"):
        found.append((finish_by_deadline(start, sla["finish_by"], sla.get("timezone") or "UTC"),
                      "finish_by"))  # fmt: skip
    when, kind = min(found)
    return kind, when


async def check_slas(session: AsyncSession, settings: Settings, tenant_id: uuid.UUID) -> int:
    """Record, count and notify the tenant's new SLA misses (session scoped to the tenant);
    the number recorded."""
    jobs = {job_id: (name, sla) for job_id, name, sla in await session.execute(
        _SLA_JOBS, {"tenant": tenant_id})}  # fmt: skip
    if not jobs:
        return 0
    now = utcnow()
    rows = await session.execute(
        _CANDIDATES, {"tenant": tenant_id, "jobs": list(jobs), "recent": now - RECENTLY_FINISHED}
    )
    missed = 0
    for run_id, job_id, run_at, finished_at, status in rows.all():
        name, sla = jobs[job_id]
        kind, due = deadline(sla, run_at)
        if (finished_at or now) <= due:
            continue
        statement = (
            insert(SlaMiss)
            .values(
                tenant_id=tenant_id,
                run_id=run_id,
                job_id=job_id,
                kind=kind,
                deadline_at=due,
                detected_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(SlaMiss.run_id))
        )
        if (await session.execute(statement)).scalar_one_or_none() is None:
            continue  # another reactor recorded it first
        missed += 1
        log.info("sla.missed", tenant_id=str(tenant_id), job_id=str(job_id), run_id=str(run_id),
                 kind=kind, deadline=due.isoformat())  # fmt: skip
        after_commit(session, _counter(tenant_id, kind))
        rules = await RuleRepository(session, tenant_id).for_job(job_id)
        if rules:
            run = {"id": str(run_id), "status": status, "reason": f"sla {kind} missed",
                   "finished_at": finished_at.isoformat() if finished_at else None,
                   "deadline": due.isoformat()}  # fmt: skip
            await enqueue(session, settings, tenant_id, ["sla_miss"], rules, job_id, name, run)
    return missed


def _counter(tenant_id: uuid.UUID, kind: str) -> Any:
    async def count() -> None:
        SLA_MISSES.labels(TENANTS.label(tenant_id), kind).inc()

    return count


async def list_misses(session: AsyncSession, tenant_id: uuid.UUID, limit: int) -> list[SlaMiss]:
    """The tenant's newest SLA misses."""
    from sqlmodel import select

    statement = (
        select(SlaMiss)
        .where(col(SlaMiss.tenant_id) == tenant_id)
        .order_by(col(SlaMiss.detected_at).desc())
        .limit(limit)
    )
    return list((await session.exec(statement)).all())

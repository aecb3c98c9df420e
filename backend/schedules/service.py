"""Schedules: keep them in step with job versions, fire what is due, explain every tick.

Every instant a schedule was due gets one row in the tick ledger, keyed by (job, instant):
``fired`` (with its run), ``skipped`` (paused, concurrency policy, DST policy, misfire
policy, tenant suspended) or ``missed`` (the scheduler was not running), with the reason in
words. The key is also what makes a second run for the same instant impossible - two
replicas, a restart or a clock step all meet the same unique constraint (and the runs table
has its own).

Misfires - instants that came and went while the scheduler was down or the schedule was
paused - follow the schedule's ``misfire`` policy: ``skip`` them, ``fire_once`` for all of
them (the latest), or ``fire_all`` up to ``max_catchup`` (the latest ones).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.db import after_commit
from backend.core.errors import NotFound, ValidationFailed
from backend.core.models import utcnow
from backend.core.principal import Actor, Principal
from backend.jobs.repository import JobRepository
from backend.schedules.models import Schedule, ScheduleTick
from backend.schedules.repository import (
    ScheduleRepository,
    TickRepository,
    drop_prepared_fire,
    drop_prepared_fires,
)
from kernel.cron import CronError, CronSchedule, Tick, next_fire, next_ticks
from kernel.wire import keys

# Who a scheduled run is attributed to in the audit log.
SCHEDULER_ACTOR = Actor(type="system", label="scheduler")

# A tick is on time while it is at most this late; older ones are misfires.
MISFIRE_GRACE = timedelta(seconds=60)
MAX_PREVIEW = 100


class StaleLease(Exception):
    """A newer scheduler holds this tenant's lease: this one must not write."""


def cron_of(spec: dict[str, Any]) -> CronSchedule:
    """The cron engine's view of a stored ``schedule:`` section."""
    return CronSchedule(
        cron=spec["cron"],
        timezone=spec.get("timezone") or "UTC",
        dst_gap=spec.get("dst_gap") or "shift",
        dst_overlap=spec.get("dst_overlap") or "first",
        start_at=_instant(spec.get("start_at")),
        end_at=_instant(spec.get("end_at")),
    )


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


async def drop_fires_of_suspended(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """A tenant being suspended: drop every fire prepared ahead for it that has not fired
    (the session is scoped to the tenant). A fire released ahead would otherwise be
    admitted on resume, whereas an instant while suspended is ``skipped``; the pass at each
    instant records it so. How many prepared runs were dropped."""
    return await drop_prepared_fires(
        session,
        tenant_id,
        "the tenant was suspended before this instant; its prepared run was dropped",
    )


# --------------------------------------------------------------------------- sync with jobs


async def sync_schedule(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    version: int,
    schedule: dict[str, Any] | None,
) -> None:
    """Make the job's schedule row match its current version (called by the jobs service)."""
    repo = ScheduleRepository(session, tenant_id)
    if schedule is None:
        why = "the job was deleted or its schedule removed before this instant"
    else:
        why = f"the job was changed (version {version}) before this instant"
    await drop_prepared_fire(session, tenant_id, job_id, f"{why}; its prepared run was dropped")
    row = await repo.get(job_id=job_id)
    now = utcnow()
    if schedule is None:
        if row is not None:
            await session.delete(row)
            await session.flush()
        return
    cron = cron_of(schedule)
    if row is None:
        row = Schedule(
            tenant_id=tenant_id,
            job_id=job_id,
            job_version=version,
            spec=schedule,
            paused=bool(schedule.get("paused")),
            paused_since=now if schedule.get("paused") else None,
            checked_until=now,
        )
        session.add(row)
    else:
        if bool(schedule.get("paused")) != bool(row.spec.get("paused")):
            _set_paused(row, bool(schedule.get("paused")), now)
        row.spec = schedule
        row.job_version = version
        row.updated_at = now
    row.next_due_at = next_fire(cron, row.checked_until)
    await session.flush()
    _announce(session, redis, tenant_id, row.next_due_at)


async def create_schedules(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    items: list[tuple[uuid.UUID, int, dict[str, Any]]],
) -> None:
    """The schedule rows of many new jobs (job id, version, ``schedule:``) in one statement
    (called by the jobs service's bulk create); the schedulers are told after the commit."""
    if not items:
        return
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for job_id, version, schedule in items:
        paused = bool(schedule.get("paused"))
        rows.append(
            {
                "tenant_id": tenant_id,
                "job_id": job_id,
                "job_version": version,
                "spec": schedule,
                "paused": paused,
                "paused_since": now if paused else None,
                "next_due_at": next_fire(cron_of(schedule), now),
                "checked_until": now,
                "fence": 0,
                "updated_at": now,
            }
        )
    await session.execute(insert(Schedule), rows)
    due = [
        row["next_due_at"] for row in rows if row["next_due_at"] is not None and not row["paused"]
    ]
    _announce(session, redis, tenant_id, min(due) if due else None)


def _set_paused(row: Schedule, paused: bool, now: datetime) -> None:
    row.paused = paused
    row.paused_since = now if paused else row.paused_since


def _announce(
    session: AsyncSession, redis: Redis, tenant_id: uuid.UUID, due: datetime | None
) -> None:
    """After the commit, tell the schedulers to look at this tenant now (``due``: its next
    instant; None: nothing to fire). That pass prepares a fire whose instant is within the
    window fires are prepared in, and puts the tenant back in the due index at its wake-up
    (an instant further off, minus that window). Announcing the instant itself left a new,
    edited or resumed schedule's first fire unprepared: no pass came before its instant."""
    if due is None:
        return

    async def announce() -> None:
        score = min(due.timestamp(), time.time())
        # LT: lower a score or add the tenant, never raise it (a sooner wake-up stands).
        await redis.zadd(keys.scheduler_due(), {str(tenant_id): score}, lt=True)

    after_commit(session, announce)


# --------------------------------------------------------------------------- API services


async def schedule_of(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> Schedule:
    """The job's schedule; 404 when the job is missing, deleted, another tenant's, or has
    no schedule."""
    if await JobRepository(session, principal.tenant_id).get_active(job_id) is None:
        raise NotFound("Job not found")
    row = await ScheduleRepository(session, principal.tenant_id).get(job_id=job_id)
    if row is None:
        raise NotFound("This job has no schedule")
    return row


async def schedules_of(
    session: AsyncSession, principal: Principal, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Schedule]:
    """The schedules of these jobs by job id, for a list of jobs (no row: no schedule).

    ``next_due_at`` is the next instant the scheduler fires (or, if it is behind, the
    overdue one it has still to record); ``paused`` says whether it will.
    """
    rows = await ScheduleRepository(session, principal.tenant_id).for_jobs(job_ids)
    return {row.job_id: row for row in rows}


async def pause(
    session: AsyncSession, redis: Redis, principal: Principal, job_id: uuid.UUID
) -> Schedule:
    """Stop firing; instants due while paused are handled by the misfire policy on resume."""
    row = await schedule_of(session, principal, job_id)
    if not row.paused:
        await drop_prepared_fire(
            session,
            principal.tenant_id,
            job_id,
            "the schedule was paused before this instant; its prepared run was dropped",
        )
        _set_paused(row, True, utcnow())
        session.add(row)
        await audit.record_for(
            session, principal, "schedule.paused", target_type="job", target_id=job_id
        )
    return row


async def resume(
    session: AsyncSession, redis: Redis, principal: Principal, job_id: uuid.UUID
) -> Schedule:
    """Fire again from now on (what fell due while paused follows the misfire policy)."""
    row = await schedule_of(session, principal, job_id)
    if row.paused:
        _set_paused(row, False, utcnow())
        row.next_due_at = next_fire(cron_of(row.spec), row.checked_until)
        session.add(row)
        await session.flush()
        _announce(session, redis, principal.tenant_id, row.next_due_at)
        await audit.record_for(
            session, principal, "schedule.resumed", target_type="job", target_id=job_id
        )
    return row


async def list_ticks(
    session: AsyncSession,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    limit: int,
    before: datetime | None,
    outcome: str | None,
) -> tuple[list[ScheduleTick], datetime | None]:
    """The tick ledger, newest first; and the cursor of the next page."""
    await schedule_of(session, principal, job_id)
    rows = await TickRepository(session, principal.tenant_id).page(
        job_id, limit=limit + 1, before=before, outcome=outcome
    )
    return rows[:limit], rows[limit - 1].scheduled_for if len(rows) > limit else None


async def preview(
    session: AsyncSession,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    count: int,
    after: datetime | None,
) -> list[Tick]:
    """The next fire times after ``after`` (default now), DST policy applied."""
    row = await schedule_of(session, principal, job_id)
    if after is not None and after.tzinfo is None:
        raise ValidationFailed(
            "after needs a time zone (e.g. 2026-03-29T00:00:00Z)",
            details=[{"loc": ["query", "after"], "msg": "naive instant", "type": "value_error"}],
        )
    try:
        return next_ticks(cron_of(row.spec), after or utcnow(), min(count, MAX_PREVIEW))
    except CronError as error:
        raise ValidationFailed(str(error)) from error


# ------------------------------------------------------------------------------- firing


@dataclass
class Decision:
    tick: Tick
    key: datetime  # the ledger's key: the instant, or where a skipped wall time would be
    outcome: str  # fired | skipped | missed
    reason: str | None


@dataclass
class FireReport:
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    planned: int = 0  # fires prepared ahead of their instant, to hand over then
    superseded: int = 0  # prepared fires dropped at their instant (no longer an instant)
    # the instants of the fires released ahead (admissible at their instant by the clock)
    released: list[datetime] = field(default_factory=list)
    recorded: int = 0  # released fires whose instant came, recorded ``fired`` by this pass
    # seconds from each fired instant to the scheduler firing it (jitter excluded: that
    # delay is the schedule's own choice, not the scheduler running late)
    lateness: list[float] = field(default_factory=list)

    def add(self, other: FireReport) -> None:
        """Count another report's fires in this one (a pass's total over its batches)."""
        self.fired += other.fired
        self.skipped += other.skipped
        self.missed += other.missed
        self.planned += other.planned
        self.superseded += other.superseded
        self.released.extend(other.released)
        self.recorded += other.recorded
        self.lateness.extend(other.lateness)


def ledger_key(tick: Tick, zone: str) -> datetime:
    """A skipped DST tick has no instant; key it where its wall time maps with fold 0."""
    if tick.instant is not None:
        return tick.instant
    from zoneinfo import ZoneInfo

    return tick.wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def decide_ticks(
    ticks: list[Tick],
    spec: dict[str, Any],
    *,
    now: datetime,
    paused_since: datetime | None,
    up_since: datetime | None = None,
) -> list[Decision]:
    """What to do with each due tick: fire, skip (DST policy) or drop as a misfire.

    ``up_since``: since when the deciding scheduler has been running; a late instant after
    it was missed because the schedulers were behind (overloaded, or a replica's lease was
    still running out), not because none was running.
    """
    zone = spec.get("timezone") or "UTC"
    decisions: list[Decision] = []
    late: list[Decision] = []
    for tick in ticks:
        key = ledger_key(tick, zone)
        if tick.instant is None:
            decisions.append(Decision(tick, key, "skipped", tick.note or "dst_gap: skipped"))
        elif tick.instant < now - MISFIRE_GRACE:
            late.append(Decision(tick, key, "fired", tick.note))
        else:
            decisions.append(Decision(tick, key, "fired", tick.note))
    if late:
        decisions.extend(_misfires(late, spec, paused_since, up_since))
    return sorted(decisions, key=lambda d: d.key)


def _misfires(
    late: list[Decision],
    spec: dict[str, Any],
    paused_since: datetime | None,
    up_since: datetime | None,
) -> list[Decision]:
    policy = spec.get("misfire") or "fire_once"
    keep = {"skip": 0, "fire_once": 1, "fire_all": int(spec.get("max_catchup") or 10)}[policy]
    fired = late[len(late) - keep :] if keep else []
    for decision in late:
        paused = paused_since is not None and decision.key >= paused_since
        if paused:
            why = "due while the schedule was paused"
        elif up_since is not None and decision.key >= up_since:
            why = "due while the scheduler was running behind"
        else:
            why = "due while no scheduler was running"
        if decision in fired:
            decision.reason = f"{why}; fired late (misfire: {policy})"
        else:
            decision.outcome = "skipped" if paused else "missed"
            decision.reason = f"{why}; not fired (misfire: {policy}" + (
                f", max_catchup {keep})" if policy == "fire_all" else ")"
            )
    return late

"""The firing path: a tenant's due schedules fired as one set, several tenants a transaction.

Per tenant, whatever the number of schedules due, a handful of statements on raw SQL (no
ORM objects loaded or flushed):

1. ``_DUE`` - the due schedules, locked (``SKIP LOCKED``: a replica that has them is left
   alone), with their job (current version, policy, name) and the tenant's status and plan;
2. for plan quotas only, the month's run count (``ix_runs_recent``); for ``forbid`` jobs
   only, which of them have an active run (their rows locked, as a manual trigger does);
3. ``_TICKS`` - every decision into the tick ledger at once; the ledger's key (job,
   instant) leaves out what another replica or an earlier pass recorded already;
4. :func:`backend.runs.repository.insert_triggered` - the runs of the ticks recorded
   ``fired``, their task runs and one pending ``schedule.fired`` audit event per run;
5. ``_CLAIM`` - the schedules advanced (``checked_until``, ``next_due_at``, ``fence``) and
   the tenant's next due instant, in one statement.

Decisions are made in Python before anything is written (DST and misfire policies in
:func:`backend.schedules.service.decide_ticks`, then tenant suspended, job gone,
concurrency policy, runs-per-month quota), so a tick is written once with its final
outcome and its run id. The fence check reads the locked rows: a stale leaseholder writes
nothing for that tenant (:class:`StaleLease`) and the other tenants of the transaction go on.
``replace`` (cancel the active run first) keeps the runs service's path: it is rare and
cancelling is not set-based. Fires skipped past the plan's runs per month are announced
with ``runs_refused`` (one per job and pass) in the same transaction: the tenant's
``quota_cancelled`` notifications, sent after the commit (``backend/triggers/reactor.py``).

Fires are prepared ahead of their instant (``ahead`` seconds): *released* (their run
``queued`` and ready at the instant, so that admission takes it then with nothing written)
where nothing at the instant can refuse them, else ``planned`` and handed over at the
instant (``_HANDOVER``); :func:`_prepare` says which is which.

Compiled schedules (:class:`kernel.cron.CronSchedule`) are cached per schedule, keyed on
the job version and the ``schedule:`` fields, so an edited schedule is compiled again.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.db import after_commit, scope_to_tenant
from backend.core.errors import Conflict, NotFound
from backend.core.models import utcnow, uuid7
from backend.core.settings import Settings
from backend.dispatch.signals import mark_tenant_due
from backend.plans.service import cached_limits_of, month_start, next_month_start
from backend.runs import service as runs_service
from backend.runs.hooks import RefusedRun, runs_refused
from backend.runs.publish import publish as publish_updates
from backend.runs.publish import run_update
from backend.runs.quota import runs_since
from backend.runs.repository import insert_triggered
from backend.runs.service import NewRun
from backend.schedules.service import (
    SCHEDULER_ACTOR,
    Decision,
    FireReport,
    StaleLease,
    cron_of,
    decide_ticks,
)
from backend.tenants.models import TenantStatus
from kernel.cron import CronSchedule, Tick, next_ticks, ticks_between
from kernel.dag.plan import PLANS, RunPlan, compile_plan
from kernel.dag.status import RunStatus, TaskStatus

log = structlog.get_logger(__name__)

QUOTA_EXCEEDED = "quota_exceeded"
DUE_LIMIT = 500  # schedules per tenant per pass; the rest stay due for the next one
QUOTA_INSTANTS_SHOWN = 20  # skipped instants a quota notification names (all are counted)

# Due (the instant has come), or within the horizon with its next fire not yet prepared;
# with the prepared fire's run (its tick ``planned``), if there is one.
_DUE = text(
    """
SELECT s.job_id, s.spec, s.paused_since, s.checked_until, s.fence, s.job_version,
       s.next_due_at, s.planned_for, k.run_id AS planned_run, r.status AS planned_status,
       j.name, j.current_version, j.concurrency_policy, j.deleted_at IS NULL AS active,
       (SELECT t.status FROM tenants t WHERE t.id = s.tenant_id) AS tenant_status,
       (SELECT t.plan FROM tenants t WHERE t.id = s.tenant_id) AS tenant_plan
FROM schedules s JOIN jobs j ON j.tenant_id = s.tenant_id AND j.id = s.job_id
LEFT JOIN schedule_ticks k
  ON k.tenant_id = s.tenant_id AND k.job_id = s.job_id AND k.scheduled_for = s.planned_for
 AND k.outcome = 'planned'
LEFT JOIN runs r ON r.tenant_id = s.tenant_id AND r.id = k.run_id
WHERE s.tenant_id = :tenant AND NOT s.paused
  AND (s.next_due_at <= :now
       OR (s.next_due_at <= :horizon AND s.planned_for IS DISTINCT FROM s.next_due_at))
ORDER BY s.next_due_at
LIMIT :limit
FOR UPDATE OF s SKIP LOCKED
"""
)

# When a schedule next needs the scheduler: at its instant once its fire is prepared (or
# was looked at for preparing) or when it is overdue, else ``:ahead`` seconds before, to
# prepare it - but not before now: the due index reads a score in the past as "due since
# then", and a replica takes a tenant due for longer than a lease as orphaned.
_WAKE = (
    "CASE WHEN {s}.planned_for >= {s}.next_due_at OR {s}.next_due_at <= CAST(:now AS timestamptz)"
    " THEN {s}.next_due_at"
    " ELSE greatest({s}.next_due_at - make_interval(secs => CAST(:ahead AS double precision)),"
    " CAST(:now AS timestamptz)) END"
)

_EARLIEST = text(
    f"SELECT min({_WAKE.format(s='s')}) FROM schedules s"  # noqa: S608 - a constant
    " WHERE s.tenant_id = :tenant AND NOT s.paused"
)


async def next_wake(
    session: AsyncSession, tenant_id: uuid.UUID, *, now: datetime, ahead: float
) -> datetime | None:
    """When the tenant next needs a scheduler pass (:data:`_WAKE`: at an instant, or
    ``ahead`` seconds before it to prepare its fire); None when nothing is scheduled."""
    result = await session.execute(_EARLIEST, {"tenant": tenant_id, "ahead": ahead, "now": now})
    wake: datetime | None = result.scalar()
    return wake


# Every decision into the ledger. An instant already there is left alone - another replica
# or an earlier pass recorded it - unless its prepared fire was ``superseded`` (an edit or a
# pause dropped it): then what is decided now is recorded, and the reason keeps why.
_TICKS = text(
    """
INSERT INTO schedule_ticks
    (tenant_id, job_id, scheduled_for, wall_time, outcome, reason, run_id, recorded_at)
SELECT tenant_id, job_id, scheduled_for, wall_time, outcome, reason, run_id, recorded_at
FROM jsonb_populate_recordset(NULL::schedule_ticks, CAST(:ticks AS jsonb))
ON CONFLICT (tenant_id, job_id, scheduled_for) DO UPDATE
SET outcome = EXCLUDED.outcome, wall_time = EXCLUDED.wall_time, run_id = EXCLUDED.run_id,
    recorded_at = EXCLUDED.recorded_at,
    reason = concat_ws('; ', EXCLUDED.reason, 'superseded earlier: ' || schedule_ticks.reason)
WHERE schedule_ticks.outcome = 'superseded'
RETURNING job_id, scheduled_for
"""
)

# The hand-over of prepared fires at their instant, in one statement: each tick ``planned``
# takes the outcome decided now; a fired one's run becomes ``queued`` (created now, for the
# month's quota) and its queued tasks ready at the run's start, which is what admission
# looks for, with its pending ``schedule.fired`` audit event; the run of a tick not fired
# is deleted (its task runs with it). A released fire's run is admissible since its
# instant already (the clock made it so): only its tick and its audit event are written.
_AUDIT_COLUMNS = (
    "tenant_id, event_id, occurred_at, actor_type, actor_id, actor_label, action, "
    "target_type, target_id, outcome, ip, user_agent, request_id, details"
)
_HANDOVER = text(
    f"""
WITH h AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS h(job_id uuid, scheduled_for timestamptz, outcome text, reason text, run_id uuid)
), ticks AS (
    UPDATE schedule_ticks AS k
    SET outcome = h.outcome, reason = concat_ws('; ', h.reason, k.reason),
        recorded_at = CAST(:now AS timestamptz),
        run_id = CASE WHEN h.outcome = 'fired' THEN h.run_id END
    FROM h
    WHERE k.tenant_id = :tenant AND k.job_id = h.job_id AND k.scheduled_for = h.scheduled_for
      AND k.outcome = 'planned' AND k.run_id = h.run_id
    RETURNING k.job_id, k.scheduled_for, h.outcome, h.run_id
), handed AS (
    UPDATE runs AS r SET status = 'queued', created_at = CAST(:now AS timestamptz)
    FROM ticks
    WHERE ticks.outcome = 'fired' AND r.tenant_id = :tenant AND r.id = ticks.run_id
      AND r.status = 'planned'
    RETURNING r.id, r.run_at
), ready AS (
    UPDATE task_runs AS t SET ready_at = handed.run_at
    FROM handed
    WHERE t.tenant_id = :tenant AND t.run_id = handed.id AND t.status = 'queued'
      AND t.ready_at IS NULL
), released AS (
    SELECT r.id, r.run_at FROM runs r JOIN ticks ON r.id = ticks.run_id
    WHERE ticks.outcome = 'fired' AND r.tenant_id = :tenant AND r.status <> 'planned'
), dropped AS (
    DELETE FROM runs AS r USING ticks
    WHERE ticks.outcome <> 'fired' AND r.tenant_id = :tenant AND r.id = ticks.run_id
      AND r.status = 'planned'
), audited AS (
    INSERT INTO audit_pending ({_AUDIT_COLUMNS})
    SELECT {_AUDIT_COLUMNS}
    FROM jsonb_populate_recordset(NULL::audit_pending, CAST(:audit AS jsonb)) AS a
    WHERE a.target_id IN (SELECT CAST(id AS text) FROM handed
                          UNION ALL SELECT CAST(id AS text) FROM released)
)
SELECT ticks.job_id, ticks.scheduled_for, ticks.outcome,
       coalesce(handed.id, released.id) AS run_id,
       coalesce(handed.run_at, released.run_at) AS run_at,
       released.id IS NOT NULL AS released
FROM ticks LEFT JOIN handed ON handed.id = ticks.run_id
LEFT JOIN released ON released.id = ticks.run_id
"""  # noqa: S608 - constants
)

# Advance the claimed schedules, and answer the tenant's next due instant: the statement's
# snapshot shows the other schedules as they are and the claimed ones as they were, so
# those are taken from what the UPDATE returns.
_CLAIM = text(
    f"""
WITH claimed AS (
    UPDATE schedules AS s
    SET fence = :fence, next_due_at = v.next_due_at,
        checked_until = CASE WHEN v.due THEN :now ELSE s.checked_until END,
        paused_since = CASE WHEN v.due THEN NULL ELSE s.paused_since END,
        planned_for = coalesce(v.planned_for, s.planned_for), updated_at = :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS v(job_id uuid, due boolean, next_due_at timestamptz, planned_for timestamptz)
    WHERE s.tenant_id = :tenant AND s.job_id = v.job_id AND s.fence <= :fence
    RETURNING s.job_id, {_WAKE.format(s="s")} AS wake
)
SELECT (SELECT count(*) FROM claimed) AS claimed,
       least(
           (SELECT min(wake) FROM claimed),
           (SELECT min({_WAKE.format(s="o")}) FROM schedules o
            WHERE o.tenant_id = :tenant AND NOT o.paused
              AND o.job_id NOT IN (SELECT job_id FROM claimed))
       ) AS next_due
"""  # noqa: S608 - constants
)

_ACTIVE = text(
    """
SELECT j.id, (SELECT r.id FROM runs r
              WHERE r.tenant_id = j.tenant_id AND r.job_id = j.id
                AND r.status IN ('queued', 'running') LIMIT 1) AS active_run
FROM jobs j
WHERE j.tenant_id = :tenant AND j.id = ANY(CAST(:jobs AS uuid[]))
ORDER BY j.id
FOR UPDATE OF j
"""
)

_VERSIONS = text(
    """
SELECT v.job_id, v.version, v.spec
FROM job_versions v
JOIN jsonb_to_recordset(CAST(:wanted AS jsonb)) AS w(job_id uuid, version int)
  ON v.job_id = w.job_id AND v.version = w.version
WHERE v.tenant_id = :tenant
"""
)


# ------------------------------------------------------------------------ compiled crons

_CRONS: dict[uuid.UUID, tuple[tuple[Any, ...], CronSchedule]] = {}
_MAX_CRONS = 200_000


def compiled(job_id: uuid.UUID, version: int, spec: dict[str, Any]) -> CronSchedule:
    """The schedule's compiled cron, cached per schedule (keyed on its version and the
    fields that shape the instants, so an edit compiles it again)."""
    key = (
        version,
        spec.get("cron"),
        spec.get("timezone"),
        spec.get("dst_gap"),
        spec.get("dst_overlap"),
        spec.get("start_at"),
        spec.get("end_at"),
    )
    hit = _CRONS.get(job_id)
    if hit is not None and hit[0] == key:
        return hit[1]
    if len(_CRONS) >= _MAX_CRONS:
        _CRONS.clear()
    cron = cron_of(spec)
    _CRONS[job_id] = (key, cron)
    return cron


# ------------------------------------------------------------------------------ firing


@dataclass
class _Due:
    """One due schedule as ``_DUE`` reads it, with what this pass decided for it."""

    job_id: uuid.UUID
    spec: dict[str, Any]
    name: str
    version: int
    policy: str
    active: bool
    decisions: list[Decision]
    next_due_at: datetime | None
    due: bool = True  # its instant has come (else it is here only to prepare its next fire)
    planned_for: datetime | None = None  # the instant prepared ahead, as read
    planned_run: uuid.UUID | None = None  # its run (None: nothing was prepared for it)
    released: bool = False  # that run was released: admissible at its instant by the clock
    released_reason: str | None = None  # the reason its fire carries, if any
    plan: Tick | None = None  # the next fire, to prepare in this pass
    plan_mark: datetime | None = None  # the new ``planned_for`` (prepared, or looked at)


class _CronMemo:
    """The cron arithmetic of one :func:`fire_tenants` call, shared by its schedules.

    Schedules with the same cron, zone, DST policy and bounds compile to equal
    :class:`CronSchedule` values and, in one pass, ask for the same instants (the ticks
    since the same last look, the next one after the same ``now``): each answer is worked
    out once. A third of the scheduler's CPU was this arithmetic, repeated per schedule."""

    def __init__(self) -> None:
        self._between: dict[tuple[CronSchedule, datetime, datetime], tuple[Tick, ...]] = {}
        self._next: dict[tuple[CronSchedule, datetime], Tick | None] = {}

    def between(self, cron: CronSchedule, after: datetime, until: datetime) -> list[Tick]:
        """:func:`ticks_between` (a list of the caller's own)."""
        key = (cron, after, until)
        found = self._between.get(key)
        if found is None:
            found = self._between[key] = tuple(ticks_between(cron, after, until))
        return list(found)

    def following(self, cron: CronSchedule, after: datetime) -> Tick | None:
        """The next firing tick after ``after`` (:func:`next_ticks`), or None."""
        key = (cron, after)
        if key not in self._next:
            upcoming = next_ticks(cron, after, 1)
            self._next[key] = upcoming[0] if upcoming else None
        return self._next[key]


async def fire_tenants(
    session: AsyncSession,
    redis: Redis,
    fences: dict[uuid.UUID, int],
    *,
    settings: Settings | None,
    up_since: datetime | None = None,
    now: datetime | None = None,
    ahead: float = 0.0,
) -> dict[uuid.UUID, tuple[FireReport, datetime | None] | StaleLease]:
    """Fire the due schedules of several tenants in the session's one transaction (the
    caller commits). Per tenant: its report and when it next needs the scheduler, or
    :class:`StaleLease` when a newer leaseholder has written (nothing was written for it).

    ``settings``: the installation's, for plan quotas (None: quotas are not checked).
    ``ahead``: prepare each schedule's next fire when its instant is at most this many
    seconds away (0: fire at the instant only); prepared fires are handed over whatever
    it is.
    """
    now = now or utcnow()
    memo = _CronMemo()
    results: dict[uuid.UUID, tuple[FireReport, datetime | None] | StaleLease] = {}
    for tenant_id, fence in fences.items():
        await scope_to_tenant(session, tenant_id)
        try:
            results[tenant_id] = await _fire_tenant(
                session,
                redis,
                tenant_id,
                fence,
                settings=settings,
                up_since=up_since,
                now=now,
                ahead=ahead,
                memo=memo,
            )
        except StaleLease as stale:
            results[tenant_id] = stale
    return results


async def fire_due(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    *,
    fence: int,
    settings: Settings | None = None,
    now: datetime | None = None,
    up_since: datetime | None = None,
    ahead: float = 0.0,
) -> tuple[FireReport, datetime | None]:
    """Fire every due schedule of one tenant (and prepare the fires ``ahead`` seconds
    away); its report and when it next needs the scheduler.

    Raises :class:`StaleLease` when a newer leaseholder has written (nothing written).
    """
    result = (
        await fire_tenants(
            session,
            redis,
            {tenant_id: fence},
            settings=settings,
            up_since=up_since,
            now=now,
            ahead=ahead,
        )
    )[tenant_id]
    if isinstance(result, StaleLease):
        raise result
    return result


async def _fire_tenant(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    fence: int,
    *,
    settings: Settings | None,
    up_since: datetime | None,
    now: datetime,
    ahead: float,
    memo: _CronMemo,
) -> tuple[FireReport, datetime | None]:
    horizon = now + timedelta(seconds=ahead)
    rows = (
        await session.execute(
            _DUE, {"tenant": tenant_id, "now": now, "horizon": horizon, "limit": DUE_LIMIT}
        )
    ).all()
    report = FireReport()
    if not rows:
        return report, await next_wake(session, tenant_id, now=now, ahead=ahead)
    if any(row.fence > fence for row in rows):
        raise StaleLease(f"tenant {tenant_id}: a newer scheduler holds the lease")
    suspended = rows[0].tenant_status != TenantStatus.active
    due: list[_Due] = []
    for row in rows:
        cron = compiled(row.job_id, row.job_version, row.spec)
        is_due = row.next_due_at <= now
        decisions = (
            decide_ticks(
                memo.between(cron, row.checked_until, now),
                row.spec,
                now=now,
                paused_since=row.paused_since,
                up_since=up_since,
            )
            if is_due
            else []
        )
        following = memo.following(cron, now)
        item = _Due(
            job_id=row.job_id,
            spec=row.spec,
            name=row.name,
            version=row.current_version,
            policy=row.spec.get("concurrency_policy") or row.concurrency_policy,
            active=row.active,
            decisions=decisions,
            next_due_at=(following.instant if following else None) if is_due else row.next_due_at,
            due=is_due,
            planned_for=row.planned_for,
            planned_run=row.planned_run,
            released=row.planned_run is not None
            and row.planned_status is not None
            and row.planned_status != RunStatus.planned,
        )
        if item.released and is_due:
            # It fired at its instant whatever this pass would decide now (a late pass
            # would call it missed): its tick is recorded ``fired``, nothing re-decided;
            # the reason a fire carries (a DST shift) is kept.
            for decision in decisions:
                if decision.key == row.planned_for and decision.outcome == "fired":
                    item.released_reason = decision.reason
            item.decisions = [d for d in decisions if d.key != row.planned_for]
        at = item.next_due_at
        # A schedule whose instant has come is only handed over (or fired) in this pass, so
        # that the transaction holding the hand-over is short and commits first; its next
        # fire is prepared by the next pass (its wake-up is that instant minus ``ahead``).
        if (
            ahead > 0
            and not is_due
            and at is not None
            and at <= horizon
            and (row.planned_for is None or at > row.planned_for)
        ):
            item.plan_mark = at
            # ``replace`` cancels the active run at the instant: decided then, not here
            if item.active and item.policy != "replace" and following and following.instant == at:
                item.plan = following
        due.append(item)
    await _refuse(session, tenant_id, due, suspended=suspended)
    room = await _apply_quota(session, settings, tenant_id, rows[0].tenant_plan, due, now)

    # Every decision into the ledger; fired ones carry the id their run will have. A
    # decision on an instant prepared ahead is a hand-over of its tick and run instead.
    run_ids: dict[tuple[uuid.UUID, datetime], uuid.UUID] = {}
    tick_rows: list[dict[str, Any]] = []
    handovers: list[dict[str, Any]] = []
    recorded_at = utcnow()
    for item in due:
        if item.released and item.planned_for is not None and item.planned_for <= now:
            handovers.append(_handover(item, "fired", item.released_reason))
        for decision in item.decisions:
            if item.planned_run is not None and decision.key == item.planned_for:
                handovers.append(_handover(item, decision.outcome, decision.reason))
                continue
            run_id = None
            if decision.outcome == "fired" and item.policy != "replace":
                run_id = run_ids[(item.job_id, decision.key)] = uuid7()
            tick_rows.append(_tick(tenant_id, item, decision.key, decision.tick, recorded_at))
            tick_rows[-1].update(outcome=decision.outcome, reason=decision.reason, run_id=run_id)
        if (
            item.planned_run is not None
            and not item.released
            and item.planned_for is not None
            and item.planned_for <= now
            and not any(d.key == item.planned_for for d in item.decisions)
        ):
            handovers.append(_handover(item, "superseded", "no longer an instant of the schedule"))
    handed = await _hand_over(session, tenant_id, handovers, now, report)

    planned = await _prepare(
        session, tenant_id, due, now, recorded_at, tick_rows, release=not suspended, room=room
    )
    recorded: set[tuple[uuid.UUID, datetime]] = set()
    if tick_rows:
        result = await session.execute(_TICKS, {"ticks": _json(tick_rows)})
        recorded = {(job_id, at) for job_id, at in result.all()}
    await _announce_quota_skips(session, tenant_id, due, recorded, recorded_at)
    await _insert_runs(
        session, redis, tenant_id, due, recorded, run_ids, now, report, planned, handed
    )

    claim = (
        await session.execute(
            _CLAIM,
            {
                "tenant": tenant_id,
                "fence": fence,
                "now": now,
                "ahead": ahead,
                "rows": _json(
                    [
                        {
                            "job_id": d.job_id,
                            "due": d.due,
                            "next_due_at": d.next_due_at,
                            "planned_for": d.plan_mark,
                        }
                        for d in due
                    ]
                ),
            },
        )
    ).one()
    if claim.claimed < len(due):  # cannot happen while the rows are locked; be safe
        raise StaleLease(f"tenant {tenant_id}: a newer scheduler holds the lease")
    return report, claim.next_due


def _tick(
    tenant_id: uuid.UUID, item: _Due, key: datetime, tick: Tick, recorded_at: datetime
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "job_id": item.job_id,
        "scheduled_for": key,
        "wall_time": tick.wall.isoformat(),
        "outcome": "planned",
        "reason": None,
        "run_id": None,
        "recorded_at": recorded_at,
    }


def _handover(item: _Due, outcome: str, reason: str | None) -> dict[str, Any]:
    return {
        "job_id": item.job_id,
        "scheduled_for": item.planned_for,
        "outcome": outcome,
        "reason": reason,
        "run_id": item.planned_run,
    }


@dataclass
class _Handed:
    """A prepared fire handed over to admission at its instant."""

    job_id: uuid.UUID
    run_id: uuid.UUID
    scheduled_for: datetime
    run_at: datetime
    released: bool = False  # admissible since its instant already: only recorded now


async def _hand_over(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    rows: list[dict[str, Any]],
    now: datetime,
    report: FireReport,
) -> list[_Handed]:
    """Hand the prepared fires over (one statement); the runs that became admissible."""
    if not rows:
        return []
    audits = [
        _fired_event(tenant_id, row["job_id"], row["run_id"], row["scheduled_for"])
        for row in rows
        if row["outcome"] == "fired"
    ]
    result = await session.execute(
        _HANDOVER,
        {"tenant": tenant_id, "now": now, "rows": _json(rows), "audit": _json(audits)},
    )
    handed: list[_Handed] = []
    for row in result.all():
        if row.run_id is not None:
            handed.append(
                _Handed(row.job_id, row.run_id, row.scheduled_for, row.run_at, row.released)
            )
        elif row.outcome == "skipped":
            report.skipped += 1
        elif row.outcome == "missed":
            report.missed += 1
        elif row.outcome == "superseded":
            report.superseded += 1
    return handed


@dataclass
class _Prepared:
    """A next fire prepared in this pass: its rows, and whether it is released."""

    item: _Due
    key: datetime
    run_rows: list[dict[str, Any]]
    task_rows: list[dict[str, Any]]
    released: bool


async def _prepare(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    due: list[_Due],
    now: datetime,
    recorded_at: datetime,
    tick_rows: list[dict[str, Any]],
    *,
    release: bool,
    room: int | None,
) -> list[_Prepared]:
    """The next fires to prepare ahead, with a ``planned`` tick each added to
    ``tick_rows``. A run that would be over at creation (every task skipped) is not
    prepared: it is created at its instant, as without preparing.

    A fire that nothing at its instant can refuse is *released*: its run ``queued`` and
    its queued tasks ready at the run's start, so that admission takes it at its instant
    with no write then (the clock is the hand-over). That is an ``allow`` job of an active
    tenant within the plan's runs per month (``room``: how many more may be reserved; None:
    no limit; a fire reserves its run when prepared). Edits, pauses, deletions and a
    suspension before the instant drop it (:func:`backend.schedules.repository.
    drop_prepared_fire`). Any other is prepared ``planned`` (its tasks without
    ``ready_at``: invisible to admission) and handed over at its instant, where ``forbid``
    and the quota are decided."""
    wanted = [item for item in due if item.plan is not None]
    if not wanted:
        return []
    plans = await _plans(session, tenant_id, {(item.job_id, item.version) for item in wanted})
    prepared: list[_Prepared] = []
    for item in wanted:
        tick = item.plan
        assert tick is not None and tick.instant is not None
        key = tick.instant
        jitter = int(item.spec.get("jitter_seconds") or 0)
        run_at = key + timedelta(seconds=random.uniform(0, jitter)) if jitter else key  # noqa: S311
        plan = plans[(item.job_id, item.version)]
        new = NewRun(params=dict(plan.params), run_at=run_at, scheduled_for=key)
        runs, run_rows, task_rows = runs_service.scheduled_runs(
            tenant_id, item.job_id, plan, [new], now=now
        )
        if runs[0].status != RunStatus.queued:
            continue
        released = (
            release
            and item.policy == "allow"
            and (room is None or (room > 0 and month_start(key) == month_start(now)))
        )
        if released and room is not None:
            room -= 1
        if not released:
            for row in run_rows:
                row["status"] = RunStatus.planned
            for row in task_rows:
                if row["status"] == TaskStatus.queued:
                    row["ready_at"] = None
        tick_rows.append(_tick(tenant_id, item, key, tick, recorded_at))
        tick_rows[-1]["run_id"] = new.run_id
        prepared.append(_Prepared(item, key, run_rows, task_rows, released))
    return prepared


async def _refuse(
    session: AsyncSession, tenant_id: uuid.UUID, due: list[_Due], *, suspended: bool
) -> None:
    """Skip what must not fire: a suspended tenant, a deleted job, ``forbid`` with a run
    active (the same words as the runs service's refusals)."""
    forbid = [d for d in due if d.active and d.policy == "forbid" and _fires(d) and not suspended]
    active: dict[uuid.UUID, uuid.UUID | None] = {}
    if forbid:
        result = await session.execute(
            _ACTIVE, {"tenant": tenant_id, "jobs": [str(d.job_id) for d in forbid]}
        )
        active = {job_id: run_id for job_id, run_id in result.all()}
    for item in due:
        blocker: str | None = None  # what a forbid job's fire would run beside
        if item.job_id in active and active[item.job_id] is not None:
            blocker = f"run {active[item.job_id]}"
        for decision in item.decisions:
            if decision.outcome != "fired":
                continue
            if suspended:
                decision.outcome, decision.reason = "skipped", "tenant suspended"
            elif not item.active:
                decision.outcome, decision.reason = "skipped", NotFound("Job not found").message
            elif item.policy == "forbid" and blocker is not None:
                decision.outcome, decision.reason = "skipped", _forbidden(item, blocker)
            elif item.policy == "forbid":
                # this fire's run is active when the next instant of the pass comes
                blocker = f"the run for {decision.key.isoformat()}"


def _forbidden(item: _Due, blocker: str) -> str:
    return Conflict(f"Job {item.name!r} forbids concurrent runs and {blocker} is active").message


def _fires(item: _Due) -> bool:
    return any(d.outcome == "fired" for d in item.decisions)


async def _apply_quota(
    session: AsyncSession,
    settings: Settings | None,
    tenant_id: uuid.UUID,
    plan: str,
    due: list[_Due],
    now: datetime,
) -> int | None:
    """Skip the fires past the plan's runs per month (``quota_exceeded`` in the reason);
    the earliest instants fire while some of the quota is left. How many fires the pass
    may then release ahead (:func:`_prepare`): what is left after the month's runs
    (released ones included) and the fires made now; None: no limit (or none checked)."""
    if settings is None:
        return None
    fires = sorted(
        ((d.key, item) for item in due for d in item.decisions if d.outcome == "fired"),
        key=lambda pair: pair[0],
    )
    if not fires and not any(item.plan is not None for item in due):
        return None
    limits = await cached_limits_of(session, settings, plan)
    allowed = limits.of("runs_per_month")
    if allowed is None:
        return None
    used = await runs_since(session, tenant_id, month_start(now))
    left = max(allowed - used, 0)
    if left >= len(fires):
        return left - len(fires)
    refused = {(item.job_id, key) for key, item in fires[left:]}
    reason = (
        f"{QUOTA_EXCEEDED}: runs_per_month limit of {allowed} reached ({used} used; "
        f"resets {next_month_start(now).isoformat()})"
    )
    for item in due:
        for decision in item.decisions:
            if decision.outcome == "fired" and (item.job_id, decision.key) in refused:
                decision.outcome, decision.reason = "skipped", reason
    log.info(
        "scheduler.quota_exceeded",
        tenant_id=str(tenant_id),
        allowed=allowed,
        used=used,
        refused=len(refused),
    )
    return 0


async def _announce_quota_skips(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    due: list[_Due],
    recorded: set[tuple[uuid.UUID, datetime]],
    at: datetime,
) -> None:
    """``runs_refused`` for the fires this pass recorded skipped past the plan's runs per
    month: one per job, naming the instants (the first ``QUOTA_INSTANTS_SHOWN``) and their
    number. Ticks another pass recorded already are not announced again."""
    refused: list[RefusedRun] = []
    for item in due:
        skipped = [
            decision
            for decision in item.decisions
            if decision.outcome == "skipped"
            and (decision.reason or "").startswith(QUOTA_EXCEEDED)
            and (item.job_id, decision.key) in recorded
        ]
        if not skipped:
            continue
        refused.append(
            RefusedRun(
                job_id=item.job_id,
                source="schedule",
                limit="runs_per_month",
                reason=skipped[0].reason or QUOTA_EXCEEDED,
                refused_at=at,
                details={
                    "skipped": len(skipped),
                    "scheduled_for": [d.key.isoformat() for d in skipped[:QUOTA_INSTANTS_SHOWN]],
                },
            )
        )
    if refused:
        await runs_refused.fire(session, tenant_id, refused)


async def _plans(
    session: AsyncSession, tenant_id: uuid.UUID, wanted: set[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], RunPlan]:
    """The compiled plans of these job versions (the process-wide cache, then one query)."""
    plans: dict[tuple[uuid.UUID, int], RunPlan] = {}
    if not wanted:
        return plans
    missing: list[dict[str, Any]] = []
    for job_id, version in wanted:
        plan = PLANS.get(tenant_id, job_id, version)
        if plan is None:
            missing.append({"job_id": job_id, "version": version})
        else:
            plans[(job_id, version)] = plan
    if missing:
        result = await session.execute(_VERSIONS, {"tenant": tenant_id, "wanted": _json(missing)})
        for job_id, version, spec in result.all():
            plans[(job_id, version)] = PLANS.put(tenant_id, compile_plan(job_id, version, spec))
    return plans


async def _insert_runs(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    due: list[_Due],
    recorded: set[tuple[uuid.UUID, datetime]],
    run_ids: dict[tuple[uuid.UUID, datetime], uuid.UUID],
    now: datetime,
    report: FireReport,
    prepared: list[_Prepared],
    handed: list[_Handed],
) -> None:
    """The runs of the ticks this pass recorded ``fired`` and of the fires it prepared
    (their ticks recorded ``planned``), with their task runs, and one pending audit event
    per fire (handed over or fired), in one statement; ``replace`` through the runs
    service."""
    fresh = [
        (item, decision)
        for item in due
        for decision in item.decisions
        if (item.job_id, decision.key) in recorded
    ]
    for _, decision in fresh:
        if decision.outcome == "skipped":
            report.skipped += 1
        elif decision.outcome == "missed":
            report.missed += 1
    firing = [(item, d) for item, d in fresh if d.outcome == "fired"]
    run_rows: list[dict[str, Any]] = []
    task_rows: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    first_start: datetime | None = None
    for fire_ahead in prepared:
        if (fire_ahead.item.job_id, fire_ahead.key) not in recorded:
            continue
        run_rows.extend(fire_ahead.run_rows)
        task_rows.extend(fire_ahead.task_rows)
        if not fire_ahead.released:
            report.planned += 1
            continue
        report.released.append(fire_ahead.key)
        run_at = fire_ahead.run_rows[0]["run_at"]
        first_start = run_at if first_start is None else min(first_start, run_at)
    for fire in handed:  # its audit event went with the hand-over
        if fire.released:
            report.recorded += 1
            continue
        updates.append(
            {
                "type": "run",
                "run_id": str(fire.run_id),
                "job_id": str(fire.job_id),
                "status": RunStatus.queued,
                "reason": None,
                "at": now.isoformat(),
            }
        )
        report.fired += 1
        report.lateness.append((now - fire.scheduled_for).total_seconds())
        first_start = fire.run_at if first_start is None else min(first_start, fire.run_at)
    plans = await _plans(session, tenant_id, {(item.job_id, item.version) for item, _ in firing})
    by_job: dict[uuid.UUID, list[NewRun]] = defaultdict(list)
    replaced: list[tuple[_Due, Decision, datetime]] = []
    items = {item.job_id: item for item, _ in firing}
    for item, decision in firing:
        jitter = int(item.spec.get("jitter_seconds") or 0)
        run_at = now + timedelta(seconds=random.uniform(0, jitter)) if jitter else now  # noqa: S311
        if item.policy == "replace":
            replaced.append((item, decision, run_at))
            continue
        plan = plans[(item.job_id, item.version)]
        by_job[item.job_id].append(
            NewRun(
                params=dict(plan.params),
                run_at=run_at,
                scheduled_for=decision.key,
                run_id=run_ids[(item.job_id, decision.key)],
            )
        )
    for job_id, news in by_job.items():
        runs, rows, tasks = runs_service.scheduled_runs(
            tenant_id, job_id, plans[(job_id, items[job_id].version)], news, now=now
        )
        run_rows.extend(rows)
        task_rows.extend(tasks)
        for run in runs:
            audits.append(_fired_event(tenant_id, job_id, run.id, run.scheduled_for))
            updates.append(run_update(run))
            report.fired += 1
            if run.scheduled_for is not None:
                report.lateness.append((now - run.scheduled_for).total_seconds())
            first_start = run.run_at if first_start is None else min(first_start, run.run_at)
    if run_rows:
        await insert_triggered(session, run_rows, task_rows, audits)
    if handed or audits:
        audit.seal_soon(session, tenant_id)
    if updates or first_start is not None:
        start = first_start or now

        async def notify_engine() -> None:
            await mark_tenant_due(redis, tenant_id, start)
            await publish_updates(redis, tenant_id, updates)

        after_commit(session, notify_engine)
    for item, decision, run_at in replaced:
        await _replace(session, redis, tenant_id, item, decision, run_at, now, report)


async def _replace(
    session: AsyncSession,
    redis: Redis,
    tenant_id: uuid.UUID,
    item: _Due,
    decision: Decision,
    run_at: datetime,
    now: datetime,
    report: FireReport,
) -> None:
    """A ``replace`` fire: the runs service cancels the active run and starts this one."""
    try:
        run = await runs_service.trigger_scheduled(
            session,
            redis,
            tenant_id,
            item.job_id,
            scheduled_for=decision.key,
            run_at=run_at,
            policy=item.policy,
        )
    except (Conflict, NotFound) as error:
        await _set_tick(session, tenant_id, item.job_id, decision.key, None, error.message)
        report.skipped += 1
        return
    await _set_tick(session, tenant_id, item.job_id, decision.key, run.id, None)
    await audit.record(
        session,
        tenant_id=tenant_id,
        actor=SCHEDULER_ACTOR,
        action="schedule.fired",
        target_type="run",
        target_id=run.id,
        details={"job_id": str(item.job_id), "scheduled_for": decision.key.isoformat()},
    )
    report.fired += 1
    report.lateness.append((now - decision.key).total_seconds())


async def _set_tick(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    at: datetime,
    run_id: uuid.UUID | None,
    skipped: str | None,
) -> None:
    await session.execute(
        text(
            "UPDATE schedule_ticks SET run_id = :run, "
            "outcome = CASE WHEN CAST(:why AS text) IS NULL THEN outcome ELSE 'skipped' END, "
            "reason = coalesce(CAST(:why AS text), reason) "
            "WHERE tenant_id = :tenant AND job_id = :job AND scheduled_for = :at"
        ),
        {"run": run_id, "why": skipped, "tenant": tenant_id, "job": job_id, "at": at},
    )


def _fired_event(
    tenant_id: uuid.UUID, job_id: uuid.UUID, run_id: uuid.UUID, at: datetime | None
) -> dict[str, Any]:
    return audit.pending_row(
        tenant_id=tenant_id,
        actor=SCHEDULER_ACTOR,
        action="schedule.fired",
        target_type="run",
        target_id=run_id,
        details={"job_id": str(job_id), "scheduled_for": at.isoformat() if at else None},
    )


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_encode, separators=(",", ":"))


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

"""Retention per tenant: what is older than the plan keeps is removed, in small batches.

A tenant's history - runs (with their task runs, attempts and log lines), log lines on
their own, schedule ticks - is kept for its plan's ``log_retention_days`` (no value: kept
forever, the on-prem default). Each pass (:func:`prune`, called by the meter's loop in the
scheduler process every ``BATON_METERING_SECONDS``) removes, per tenant, what is older:

- in batches (``RUN_BATCH`` runs, ``ROW_BATCH`` log lines or ticks), each in its own
  short transaction, at most ``MAX_BATCHES`` of each per tenant and pass, so no statement
  holds locks for long and a backlog is worked off over several passes;
- never a run that is still referenced: the newest run of each job, a run not final
  (queued, running), a row another transaction holds (``SKIP LOCKED``);
- nothing of another tenant: every statement names the tenant and the transaction is
  scoped to it (row-level security).

The audit log has its own, longer retention (``BATON_AUDIT_RETENTION_DAYS``, never shorter
than the history's; unset: kept forever). Its chain is cut through ``audit_cut`` behind a
signed checkpoint (``audit.service.cut_chain``), so ``baton audit verify`` still passes.

Runs, task runs and attempts are pruned by batched deletes, not by dropping partitions:
they carry the hot path's keys and are being rewritten (the engine's writes), so their
schema is left alone this round (docs/architecture.md, "Retention").
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit_service
from backend.core.db import tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.plans.service import plan_limits
from backend.retention import repository
from backend.tenants.repository import TenantDirectory

log = structlog.get_logger(__name__)

RUN_BATCH = 500
ROW_BATCH = 10_000
AUDIT_BATCH = 10_000
MAX_BATCHES = 20
RETENTION_LIMIT = "log_retention_days"


@dataclass
class PruneReport:
    runs: int = 0
    log_lines: int = 0
    ticks: int = 0
    audit_events: int = 0

    def add(self, other: PruneReport) -> None:
        self.runs += other.runs
        self.log_lines += other.log_lines
        self.ticks += other.ticks
        self.audit_events += other.audit_events


def horizon(retention_days: int | None, now: datetime | None = None) -> datetime | None:
    """How far back history goes under a retention (None: nothing is removed)."""
    if retention_days is None:
        return None
    return (now or utcnow()) - timedelta(days=retention_days)


def audit_days(settings: Settings, history_days: int | None) -> int | None:
    """The audit log's retention: its own setting, never shorter than the history's."""
    if settings.audit_retention_days is None:
        return None
    return max(settings.audit_retention_days, history_days or 0)


Delete = Callable[[AsyncSession, uuid.UUID, datetime, int], Awaitable[int]]


async def _in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: uuid.UUID,
    delete: Delete,
    cutoff: datetime,
    batch: int,
) -> int:
    removed = 0
    for _ in range(MAX_BATCHES):
        async with tenant_transaction(sessionmaker, tenant_id) as session:
            done = await delete(session, tenant_id, cutoff, batch)
        removed += done
        if done < batch:
            break
    return removed


async def prune_tenant(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant_id: uuid.UUID,
    retention_days: int | None,
    *,
    now: datetime | None = None,
) -> PruneReport:
    """Remove the tenant's history older than ``retention_days`` and its audit events
    older than the audit retention (see the module's doc); what went."""
    now = now or utcnow()
    report = PruneReport()
    cutoff = horizon(retention_days, now)
    if cutoff is not None:
        report.log_lines = await _in_batches(
            sessionmaker, tenant_id, repository.delete_old_log_lines, cutoff, ROW_BATCH
        )
        report.runs = await _in_batches(
            sessionmaker, tenant_id, repository.delete_old_runs, cutoff, RUN_BATCH
        )
        report.ticks = await _in_batches(
            sessionmaker, tenant_id, repository.delete_old_ticks, cutoff, ROW_BATCH
        )
    audit_cutoff = horizon(audit_days(settings, retention_days), now)
    if audit_cutoff is not None and settings.secrets_kek:
        key = audit_service.checkpoint_key(settings.secrets_keks[settings.secrets_kek_id])
        for _ in range(MAX_BATCHES):
            async with tenant_transaction(sessionmaker, tenant_id) as session:
                cut = await audit_service.cut_chain(
                    session,
                    tenant_id,
                    before=audit_cutoff,
                    key_id=settings.secrets_kek_id,
                    key=key,
                    batch=AUDIT_BATCH,
                )
            report.audit_events += cut
            if cut < AUDIT_BATCH:
                break
    if report.runs or report.log_lines or report.ticks or report.audit_events:
        log.info(
            "retention.pruned",
            tenant_id=str(tenant_id),
            runs=report.runs,
            log_lines=report.log_lines,
            ticks=report.ticks,
            audit_events=report.audit_events,
        )
    return report


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    tenants: list[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> PruneReport:
    """One retention pass over every tenant (or ``tenants``), each under its plan's
    retention; what went in all."""
    async with sessionmaker() as session:
        rows = await TenantDirectory(session).all()
        plans = {t.id: t.plan for t in rows}
        limits = await plan_limits(session, settings, set(plans.values()))
    total = PruneReport()
    for tenant_id in tenants if tenants is not None else list(plans):
        plan = limits.get(plans.get(tenant_id, ""))
        days = plan.of(RETENTION_LIMIT) if plan is not None else None
        total.add(await prune_tenant(sessionmaker, settings, tenant_id, days, now=now))
    return total

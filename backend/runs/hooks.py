"""What the runs domain announces to the domains above it (``backend/core/hooks.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.hooks import Hook


@dataclass(frozen=True)
class FinishedRun:
    """A run that has just reached a final state (succeeded, failed, cancelled)."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    status: str
    reason: str | None
    finished_at: datetime


# Runs reached a final state, in the transaction that finishes them (the engine's batch,
# a cancel). Arguments: session (scoped to the tenant), tenant id, the runs. Handlers only
# write rows in that transaction (backend.triggers records them in its outbox): no network
# call, nothing slow - this is the engine's finishing step.
runs_finished: Hook[[AsyncSession, uuid.UUID, list[FinishedRun]]] = Hook(
    "runs.finished", required=True
)


@dataclass(frozen=True)
class RefusedRun:
    """A run a plan limit refused before it existed: a scheduled fire skipped past the
    plan's runs per month, an inbound webhook delivery or a job-to-job trigger refused with
    ``quota_exceeded``. ``details`` says which (the instants skipped, the webhook and its
    delivery, the upstream run); it goes into the notification as it is (JSON values)."""

    job_id: uuid.UUID
    source: str  # schedule | webhook | upstream
    limit: str | None
    reason: str
    refused_at: datetime
    details: dict[str, Any] = field(default_factory=dict)


# Runs were refused by a plan limit, in the transaction that records the refusal (the
# scheduler's tick ledger, a webhook's delivery record, the reactor's batch). Arguments:
# session (scoped to the tenant), tenant id, the refusals. Handlers only write rows in that
# transaction (backend.triggers records them in its outbox, for the notifications).
runs_refused: Hook[[AsyncSession, uuid.UUID, list[RefusedRun]]] = Hook(
    "runs.refused", required=True
)

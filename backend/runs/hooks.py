"""What the runs domain announces to the domains above it (``backend/core/hooks.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

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

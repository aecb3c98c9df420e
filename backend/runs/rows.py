"""What the DAG code and the live updates need of a run and of a task run.

The trigger path hands them ORM objects (``runs/models.py``); the engine hands them the
plain records it reads without the ORM (``engine/records.py``). Both have these columns
as attributes, so the rules in ``runs/advance.py`` are written once for both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol


class RunRow(Protocol):
    tenant_id: uuid.UUID
    id: uuid.UUID
    job_id: uuid.UUID
    job_version: int
    status: str
    trigger: str
    params: dict[str, Any]
    reason: str | None
    scheduled_for: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskRow(Protocol):
    tenant_id: uuid.UUID
    id: uuid.UUID
    run_id: uuid.UUID
    name: str
    queue: str
    status: str
    attempt: int
    ready_at: datetime | None
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    output: Any
    error: str | None
    reason: str | None
    explanation: str | None

"""What the jobs domain announces to the domains above it (``backend/core/hooks.py``)."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.hooks import Hook

# A job's current spec changed: created (version 1), updated, or deleted (schedule None).
# Arguments: session, redis, tenant id, job id, the job's current version, the ``schedule``
# section of its spec. The schedules domain keeps the job's schedule row in step.
job_schedule_changed: Hook[
    [AsyncSession, Redis, uuid.UUID, uuid.UUID, int, dict[str, Any] | None]
] = Hook("job.schedule_changed", required=True)

# Many jobs were created at once (a GitOps apply): the schedules domain makes their
# schedule rows in one statement. Arguments: session, redis, tenant id, and for each job
# with a schedule (job id, version, its ``schedule`` section).
jobs_created: Hook[
    [AsyncSession, Redis, uuid.UUID, list[tuple[uuid.UUID, int, dict[str, Any]]]]
] = Hook("jobs.created", required=True)

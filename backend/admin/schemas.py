"""Response bodies of the platform admin endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from backend.core.schemas import ResponseModel


class TenantUsage(ResponseModel):
    """What a tenant uses now: the admin console's usage columns."""

    jobs: int = Field(description="Jobs not deleted")
    runs_last_24h: int = Field(description="Runs created in the last 24 hours")
    running_tasks: int = Field(description="Task runs running right now")


class TenantAdminView(ResponseModel):
    id: uuid.UUID
    slug: str
    name: str
    plan: str
    status: str
    created_at: datetime
    usage: TenantUsage | None = Field(
        default=None, description="What it uses now (in the tenant list; null elsewhere)"
    )


class TenantAdminPage(ResponseModel):
    items: list[TenantAdminView]
    next_cursor: str | None = None


class WorkerHealth(ResponseModel):
    """A worker with a live heartbeat in Redis."""

    name: str
    queues: list[str]
    concurrency: int
    running: int
    last_heartbeat_at: datetime
    seconds_since_heartbeat: float
    version: str | None = None


class QueueHealth(ResponseModel):
    """One queue, summed over the tenants that dispatch to it."""

    queue: str
    depth: int = Field(description="Dispatched task messages no worker has read yet")
    pending: int = Field(description="Messages read by a worker but not acknowledged yet")
    tenants: int = Field(description="Tenants with a stream on this queue")


class SchedulerReplica(ResponseModel):
    name: str
    last_heartbeat_at: datetime
    live: bool = Field(description="Heartbeat within the lease time: it takes tenants")


class SchedulerLease(ResponseModel):
    """Which scheduler replica fires a tenant's schedules now."""

    tenant_id: uuid.UUID
    tenant_slug: str | None
    replica: str
    fencing_token: int
    expires_in_ms: int


class PlatformHealth(ResponseModel):
    checked_at: datetime
    workers: list[WorkerHealth]
    queues: list[QueueHealth]
    scheduler_replicas: list[SchedulerReplica]
    scheduler_leases: list[SchedulerLease]
    leases_truncated: bool = Field(
        default=False, description="More leases exist than the answer lists"
    )

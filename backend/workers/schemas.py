"""Request and response bodies of the worker endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from backend.core.schemas import RequestModel, ResponseModel
from backend.jobs.spec import QueueName


class WorkerCredentialCreate(RequestModel):
    queue: QueueName = Field(description="The queue this tenant's workers will serve")
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class WorkerCredentialPublic(ResponseModel):
    id: uuid.UUID
    name: str
    queue: str
    redis_user: str
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class WorkerCredentialCreated(WorkerCredentialPublic):
    credential: str = Field(
        description="Everything `baton worker --credential` needs. Shown only in this "
        "response; store it now."
    )


class ConnectedWorker(ResponseModel):
    name: str = Field(description="Shared-pool workers are shown by a stable alias")
    hosted: bool = Field(description="True: one of this tenant's own workers")
    queues: list[str]
    version: str | None
    concurrency: int
    running: int = Field(description="Tasks it runs now (of every tenant, for shared ones)")
    last_heartbeat_at: datetime

"""Jobs and their immutable versions. Each update writes a new version; runs pin one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100)
    description: str | None = None
    queue: str = Field(max_length=63)
    concurrency_policy: str = Field(default="allow", max_length=10)
    # The GitOps source that owns this job (``POST /api/v1/jobs:apply``); None when the
    # job is edited by hand. Prune only ever deletes jobs of the same source.
    managed_by: str | None = Field(default=None, max_length=100)
    current_version: int = 1
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
    deleted_at: datetime | None = timestamp(nullable=True, default_now=False)


class JobVersion(SQLModel, table=True):
    __tablename__ = "job_versions"

    tenant_id: uuid.UUID = tenant_pk()
    job_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    spec: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()

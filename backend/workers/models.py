"""Worker credentials: what lets a tenant run its own workers for one queue."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class WorkerCredential(SQLModel, table=True):
    __tablename__ = "worker_credentials"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100)
    queue: str = Field(max_length=63)
    # The credential's own Redis ACL user, and the SHA-256 of its password (never the
    # password: the credential string is shown once).
    redis_user: str = Field(max_length=64)
    secret_hash: str = Field(max_length=64)
    created_by: uuid.UUID | None = Field(default=None)
    created_at: datetime = timestamp()
    expires_at: datetime | None = timestamp(nullable=True, default_now=False)
    revoked_at: datetime | None = timestamp(nullable=True, default_now=False)
    # When the Redis user of a revoked or expired credential was confirmed deleted; until
    # then the engine's sweep keeps removing it (see ``WorkerCredentialRepository.ended``).
    redis_removed_at: datetime | None = timestamp(nullable=True, default_now=False)

"""A tenant's own job templates (the built-in gallery is code: ``builtin.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class JobTemplate(SQLModel, table=True):
    __tablename__ = "job_templates"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100)
    title: str = Field(max_length=200)
    description: str | None = None
    parameters: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    spec: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime = timestamp()

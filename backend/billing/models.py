"""``usage_daily``: one row per tenant and UTC day, written by the meter (tenant-owned,
row-level security)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp


class UsageDay(SQLModel, table=True):
    __tablename__ = "usage_daily"

    tenant_id: uuid.UUID = tenant_pk()
    day: date = Field(primary_key=True)
    runs: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    task_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    log_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    api_requests: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = timestamp()

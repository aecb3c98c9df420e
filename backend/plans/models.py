"""The ``plans`` table: a platform table (no tenant owns a plan), one row per plan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from backend.core.models import timestamp


class PlanRow(SQLModel, table=True):
    __tablename__ = "plans"

    name: str = Field(primary_key=True, max_length=20)
    title: str = Field(max_length=100)
    position: int = 0  # order on the pricing and admin pages
    max_concurrent_tasks: int | None = None  # None: unlimited (admission: the setting)
    weight: int | None = None
    runs_per_month: int | None = Field(default=None, sa_column=Column(BigInteger))
    task_seconds_per_month: int | None = Field(default=None, sa_column=Column(BigInteger))
    members: int | None = None
    scheduled_jobs: int | None = None
    api_requests_per_minute: int | None = None
    log_retention_days: int | None = None
    updated_at: datetime = timestamp()

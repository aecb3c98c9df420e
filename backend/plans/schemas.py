"""Request and response bodies of the plans API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PlanLimits(BaseModel):
    """A plan's limits; ``null`` is unlimited (concurrency and weight: the installation's
    defaults)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    max_concurrent_tasks: int | None = Field(default=None, ge=1, le=1_000_000)
    weight: int | None = Field(default=None, ge=1, le=1_000)
    runs_per_month: int | None = Field(default=None, ge=0, le=10**12)
    task_seconds_per_month: int | None = Field(default=None, ge=0, le=10**15)
    members: int | None = Field(default=None, ge=1, le=1_000_000)
    scheduled_jobs: int | None = Field(default=None, ge=0, le=1_000_000)
    api_requests_per_minute: int | None = Field(default=None, ge=1, le=10**9)
    log_retention_days: int | None = Field(default=None, ge=1, le=36_500)


class PlanUpdate(BaseModel):
    """A plan as a platform administrator writes it (created if the name is new)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=100)
    position: int = Field(default=0, ge=0, le=10_000)
    limits: PlanLimits


class PlanPublic(BaseModel):
    name: str
    title: str
    position: int
    limits: PlanLimits


class TenantPlanUpdate(BaseModel):
    """The plan a platform administrator puts a tenant on."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=20, pattern=r"^[a-z][a-z0-9-]*$")

"""Template request and response bodies."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from backend.core.schemas import RequestModel, ResponseModel
from backend.jobs.schemas import JobPublic

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class TemplatePublic(ResponseModel):
    name: str
    title: str
    description: str | None
    source: str = Field(description="builtin (the gallery) or tenant (saved by the tenant)")
    parameters: dict[str, Any] = Field(description="JSON Schema of the parameters")
    spec: dict[str, Any] = Field(description="The job spec, {{ name }} marking parameters")


class TemplateFromJob(RequestModel):
    """Save one of the tenant's jobs as a template; its params become the parameters."""

    name: str = Field(pattern=NAME_PATTERN)
    job_id: uuid.UUID
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class Instantiate(RequestModel):
    job_name: str = Field(pattern=NAME_PATTERN, description="The new job's name")
    params: dict[str, Any] = Field(default_factory=dict, max_length=100)
    dry_run: bool = Field(default=False, description="Render and validate only")


class Instantiated(ResponseModel):
    spec: dict[str, Any] = Field(description="The validated job spec")
    job: JobPublic | None = Field(description="The created job (None on a dry run)")

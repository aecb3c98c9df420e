"""Response bodies of the job endpoints. Request bodies are job specs (``backend.jobs.spec``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from backend.core.schemas import Page, ResponseModel
from backend.jobs.models import Job, JobVersion
from backend.secrets.references import mask_literal_credentials

SPEC_DESCRIPTION = "The job spec of this version (the format of the create/replace request body)"
# Versions saved before literal credentials were refused may hold some: shown as ***.
DisplayedSpec = Annotated[dict[str, Any], AfterValidator(mask_literal_credentials)]


class JobPublic(ResponseModel):
    id: uuid.UUID
    name: str
    description: str | None
    queue: str
    concurrency_policy: str
    current_version: int
    created_at: datetime
    updated_at: datetime
    spec: DisplayedSpec = Field(description=SPEC_DESCRIPTION)

    @classmethod
    def build(cls, job: Job, version: JobVersion) -> JobPublic:
        """A job with its current version's spec."""
        return cls(
            id=job.id,
            name=job.name,
            description=job.description,
            queue=job.queue,
            concurrency_policy=job.concurrency_policy,
            current_version=job.current_version,
            created_at=job.created_at,
            updated_at=job.updated_at,
            spec=version.spec,
        )


class JobVersionPublic(ResponseModel):
    version: int
    spec: DisplayedSpec = Field(description=SPEC_DESCRIPTION)
    created_at: datetime
    created_by: uuid.UUID | None


class JobPage(Page[JobPublic]):
    """Jobs newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""


class JobVersionPage(Page[JobVersionPublic]):
    """Versions newest first; pass ``next_cursor`` back as ``cursor`` for older ones."""


class GraphNode(ResponseModel):
    name: str
    type: str
    depends_on: list[str]
    trigger_rule: str
    on_failure: str
    when: str | None = None
    for_each: str | None = None
    queue: str


class GraphEdge(ResponseModel):
    source: str = Field(description="The upstream task")
    target: str = Field(description="The task that depends on it")


class JobGraph(ResponseModel):
    """A job's DAG for drawing: ``layers`` are topological generations (layer n depends
    only on layers before it)."""

    job_id: uuid.UUID
    version: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    layers: list[list[str]]

"""Response bodies of the job endpoints. Request bodies are job specs (``backend.jobs.spec``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from backend.core.schemas import Page, RequestModel, ResponseModel
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
    managed_by: str | None = Field(
        default=None, description="The GitOps source that owns the job (jobs:apply), if any"
    )
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
            managed_by=job.managed_by,
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


MANAGED_BY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,99}$"
MAX_APPLY_JOBS = 500


class ApplyRequest(RequestModel):
    """A set of job specs applied as one source (``POST /api/v1/jobs:apply``)."""

    managed_by: str = Field(
        pattern=MANAGED_BY_PATTERN,
        description="The source that owns these jobs, e.g. git:acme/jobs; prune only "
        "deletes this source's jobs",
    )
    jobs: list[dict[str, Any]] = Field(
        max_length=MAX_APPLY_JOBS, description="Job specs (the create request body), by name"
    )
    prune: bool = Field(default=False, description="Delete this source's jobs not in the set")
    dry_run: bool = Field(default=False, description="Plan and diff only; write nothing")
    expected_versions: dict[str, int | None] = Field(
        default_factory=dict,
        max_length=MAX_APPLY_JOBS * 2,
        description="Optimistic concurrency: job name -> the version the caller saw (null: "
        "did not exist). Any mismatch is a 409 and nothing is applied; when given, a job "
        "the apply would create, update, adopt or delete (prune) that is not named here is "
        "a 409 as well.",
    )


class ApplyChange(ResponseModel):
    name: str
    action: str = Field(description="created, updated, unchanged, adopted or deleted")
    job_id: uuid.UUID | None = Field(description="None for a job a dry run would create")
    from_version: int | None = Field(description="The current version before the apply")
    to_version: int | None = Field(description="The version after it (None once deleted)")
    diff: str = Field(description="Unified diff of the specs as YAML; empty when unchanged")


class ApplyResult(ResponseModel):
    managed_by: str
    dry_run: bool
    changes: list[ApplyChange]
    summary: dict[str, int] = Field(description="How many jobs per action")

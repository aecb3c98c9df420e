"""Jobs and their versions.

Create and replace take a job spec as JSON, or as YAML with a YAML content type
(``application/yaml``, ``application/x-yaml``, ``text/yaml``); the body is read raw and
parsed by ``backend.jobs.spec``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.jobs import apply, service
from backend.jobs.schemas import (
    ApplyRequest,
    ApplyResult,
    JobGraph,
    JobPage,
    JobPublic,
    JobVersionPage,
    JobVersionPublic,
)
from backend.jobs.spec import JobSpec, job_spec_json_schema, parse_job_spec

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=AUTHENTICATED)


def _spec_body() -> dict[str, Any]:
    schema = job_spec_json_schema()
    return {
        "requestBody": {
            "required": True,
            "description": "A job spec, as JSON or as YAML (YAML anchors/aliases are refused)",
            "content": {
                "application/json": {"schema": schema},
                "application/yaml": {"schema": schema},
            },
        }
    }


SPEC_BODY = _spec_body()


async def _read_spec(request: Request) -> JobSpec:
    return parse_job_spec(await request.body(), request.headers.get("content-type"))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses=CONFLICT,
    openapi_extra=SPEC_BODY,
)
async def create_job(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> JobPublic:
    """Create a job from a spec; it becomes version 1. 409 if the name is in use."""
    return await service.create_job(session, redis, principal, await _read_spec(request))


@router.post(
    ":apply",
    response_model=ApplyResult,
    responses=CONFLICT,  # a job changed since read (stale expected_versions), or another source's
)
async def apply_jobs(
    body: ApplyRequest,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> ApplyResult:
    """GitOps: create, update or leave unchanged each job of the set by name, and with
    ``prune`` delete the source's jobs missing from it, all in one transaction;
    ``dry_run`` answers the plan with a diff per job and writes nothing."""
    return await apply.apply_jobs(session, redis, principal, body)


@router.get("", response_model=JobPage)
async def list_jobs(
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
    name: Annotated[
        str | None,
        Query(max_length=100, pattern=r"^[A-Za-z0-9_.-]*$", description="Name prefix"),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=100, description="A previous page's next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    """The tenant's jobs with their current specs, newest first."""
    jobs, next_cursor = await service.list_jobs(
        session, principal, limit=limit, cursor=cursor, name=name
    )
    return JobPage(items=jobs, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=BY_ID)
async def get_job(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
) -> JobPublic:
    """One job with its current spec."""
    return await service.get_job(session, principal, job_id)


@router.put(
    "/{job_id}",
    response_model=JobPublic,
    responses={**BY_ID, **CONFLICT},
    openapi_extra=SPEC_BODY,
)
async def replace_job(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> JobPublic:
    """Replace the whole spec: a new version, unless the spec is identical to the current
    one (then the job is returned unchanged). Renaming is allowed if the name is free."""
    return await service.update_job(session, redis, principal, job_id, await _read_spec(request))


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID)
async def delete_job(
    job_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> None:
    """Delete a job (soft: its versions stay for past runs; its name becomes free)."""
    await service.delete_job(session, redis, principal, job_id)


@router.get("/{job_id}/versions", response_model=JobVersionPage, responses=BY_ID)
async def list_versions(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
    cursor: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="A previous page's next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobVersionPage:
    """A job's versions, newest first."""
    versions, next_cursor = await service.list_versions(
        session, principal, job_id, limit=limit, cursor=cursor
    )
    return JobVersionPage(
        items=[JobVersionPublic.model_validate(v) for v in versions],
        next_cursor=str(next_cursor) if next_cursor is not None else None,
    )


@router.get("/{job_id}/graph", response_model=JobGraph, responses=BY_ID)
async def get_graph(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
) -> JobGraph:
    """The job's DAG for drawing: nodes, edges and layers (topological generations)."""
    return await service.get_graph(session, principal, job_id)

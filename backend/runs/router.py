"""Trigger, list, inspect, cancel and re-run runs; read their logs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT, QUOTA
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.core.schemas import AwareInstant
from backend.runs import service
from backend.runs.schemas import (
    LogPage,
    RerunRequest,
    RunBatchResult,
    RunBatchTrigger,
    RunDetail,
    RunGraph,
    RunPage,
    RunPublic,
    RunTrigger,
)
from kernel.dag.status import RunStatus

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=AUTHENTICATED)


@router.post(
    "/jobs/{job_id}/runs",
    status_code=status.HTTP_201_CREATED,
    response_model=RunPublic,
    responses={
        200: {"model": RunPublic, "description": "Idempotent replay: the existing run"},
        **BY_ID,
        **CONFLICT,
        **QUOTA,
    },
)
async def trigger_run(
    job_id: uuid.UUID,
    response: Response,
    session: SessionDep,
    redis: RedisDep,
    body: RunTrigger | None = None,
    principal: Principal = Authorized(Permission.runs_operate),
) -> RunPublic:
    """Trigger a run now, after ``delay_seconds`` or at ``run_at``.

    The same ``idempotency_key`` answers the run it created the first time (200).
    """
    [(run, created)] = await service.trigger(
        session, redis, principal, job_id, [body or RunTrigger()]
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return RunPublic.model_validate(run)


@router.post(
    "/jobs/{job_id}/runs/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=RunBatchResult,
    responses={
        200: {"model": RunBatchResult, "description": "Idempotent replay: no run was new"},
        **BY_ID,
        **CONFLICT,
        **QUOTA,
    },
)
async def trigger_batch(
    job_id: uuid.UUID,
    body: RunBatchTrigger,
    response: Response,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.runs_operate),
) -> RunBatchResult:
    """Trigger up to 1,000 runs in one transaction (backfills, fan-in from other systems)."""
    results = await service.trigger(session, redis, principal, job_id, body.runs)
    created = sum(1 for _, was_created in results if was_created)
    if created == 0:
        response.status_code = status.HTTP_200_OK
    return RunBatchResult(runs=[RunPublic.model_validate(r) for r, _ in results], created=created)


@router.get("/runs", response_model=RunPage)
async def list_runs(
    session: SessionDep,
    principal: Principal = Authorized(Permission.runs_read),
    job_id: uuid.UUID | None = None,
    run_status: Annotated[list[RunStatus] | None, Query(alias="status")] = None,
    created_after: Annotated[
        AwareInstant | None, Query(description="Created at or after this instant")
    ] = None,
    created_before: Annotated[
        AwareInstant | None, Query(description="Created before this instant")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Runs newest first; filter by ``job_id``, ``status`` (repeatable) and creation time."""
    runs, next_cursor = await service.list_runs(
        session,
        principal,
        job_id=job_id,
        statuses=[s.value for s in run_status or []],
        cursor=cursor,
        limit=limit,
        created_after=created_after,
        created_before=created_before,
    )
    retention_days, history_since = service.history_window(principal)
    return RunPage(
        items=[RunPublic.model_validate(r) for r in runs],
        next_cursor=next_cursor,
        retention_days=retention_days,
        history_since=history_since,
    )


@router.get("/runs/{run_id}", response_model=RunDetail, responses=BY_ID)
async def get_run(
    run_id: uuid.UUID, session: SessionDep, principal: Principal = Authorized(Permission.runs_read)
) -> RunDetail:
    """A run with its tasks and every attempt (worker, timings, exit code, error, output)."""
    return await service.get_run(session, principal, run_id)


@router.get("/runs/{run_id}/graph", response_model=RunGraph, responses=BY_ID)
async def get_run_graph(
    run_id: uuid.UUID, session: SessionDep, principal: Principal = Authorized(Permission.runs_read)
) -> RunGraph:
    """The run's DAG: each node's status, attempts, timings and why it was skipped or not
    run (trigger rule, condition, upstream failure, fail_fast)."""
    return await service.get_graph(session, principal, run_id)


@router.get("/runs/{run_id}/logs", response_model=LogPage, responses=BY_ID)
async def get_logs(
    run_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.runs_read),
    task: Annotated[str | None, Query(max_length=100)] = None,
    attempt: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    """Log lines in order, optionally of one task and attempt; works while tasks run."""
    lines, next_cursor = await service.read_logs(
        session, principal, run_id, task=task, attempt=attempt, cursor=cursor, limit=limit
    )
    return LogPage(items=lines, next_cursor=next_cursor)


@router.post("/runs/{run_id}/cancel", response_model=RunPublic, responses={**BY_ID, **CONFLICT})
async def cancel_run(
    run_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.runs_operate),
) -> RunPublic:
    """Cancel a queued or running run; running tasks are killed."""
    return RunPublic.model_validate(await service.cancel_run(session, redis, principal, run_id))


@router.post(
    "/runs/{run_id}/rerun",
    status_code=status.HTTP_201_CREATED,
    response_model=RunPublic,
    responses={**BY_ID, **CONFLICT, **QUOTA},
)
async def rerun(
    run_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    body: RerunRequest | None = None,
    principal: Principal = Authorized(Permission.runs_operate),
) -> RunPublic:
    """Run again with the same job version and params; ``from_failed`` keeps what succeeded."""
    run = await service.rerun(
        session, redis, principal, run_id, from_failed=bool(body and body.from_failed)
    )
    return RunPublic.model_validate(run)

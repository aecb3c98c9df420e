"""Dashboard pages: the run list, a run's page (DAG, tasks, attempts, logs) and its actions.

Everything is read and changed through ``backend.runs.service``, as the REST API does; the
live parts of the run page (``runs_live``) stream the same fragments over SSE.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from backend.core.db import SessionDep
from backend.core.deps import RedisDep
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.jobs import service as jobs_service
from backend.runs import service as runs_service
from backend.web import runs_live
from backend.web.csrf import CsrfChecked
from backend.web.render import fragment, page, redirect
from backend.web.runs_view import RUN_STATUSES, RunFilters, log_pane, run_context
from backend.web.session import WebAuthorized

router = APIRouter(include_in_schema=False)
router.include_router(runs_live.router)

PAGE_SIZE = 50
JOB_CHOICES = 200  # jobs offered in the list's job filter (newest first)

FilterText = Annotated[str, Query(max_length=100)]


@router.get("/runs")
async def run_list(
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.runs_read),
    status: Annotated[list[str] | None, Query()] = None,
    job: FilterText = "",
    created_after: FilterText = "",
    created_before: FilterText = "",
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """Runs newest first, filtered by status, job and creation time; a page at a time."""
    filters = RunFilters.parse(
        statuses=status or [], job=job, created_after=created_after, created_before=created_before
    )
    jobs, _ = await jobs_service.list_jobs(session, principal, limit=JOB_CHOICES)
    context: dict[str, Any] = {
        "principal": principal,
        "section": "runs",
        "filters": filters,
        "statuses": RUN_STATUSES,
        "jobs": jobs,
        "runs": [],
        "names": {},
        "next_url": None,
        "retention": runs_service.history_window(principal),
    }
    if filters.errors:
        return page(request, "runs/list.html", context, status=422)
    runs, next_cursor = await runs_service.list_runs(
        session,
        principal,
        job_id=filters.job_id,
        statuses=filters.statuses,
        cursor=cursor,
        limit=PAGE_SIZE,
        created_after=filters.created_after,
        created_before=filters.created_before,
    )
    context["runs"] = runs
    context["names"] = await runs_service.job_names(session, principal, [r.job_id for r in runs])
    if next_cursor:
        context["next_url"] = "/runs?" + filters.query(cursor=next_cursor)
    return page(request, "runs/list.html", context)


@router.get("/runs/{run_id}")
async def run_page(
    run_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.runs_read),
    task: Annotated[str | None, Query(max_length=120)] = None,
) -> Response:
    """A run: status, params and timings, its DAG coloured by task status, every task's
    attempts and why it was skipped or failed, and one task's log (live while it runs)."""
    context = await run_context(session, principal, run_id)
    context["log"] = await log_pane(session, principal, context, task)
    context["section"] = "runs"
    return page(request, "runs/detail.html", context)


@router.get("/runs/{run_id}/tasks/{task}/logs")
async def task_log_pane(
    run_id: uuid.UUID,
    task: str,
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.runs_read),
) -> Response:
    """One task's log pane (what the run page swaps in when another task is picked)."""
    context = await run_context(session, principal, run_id)
    context["log"] = await log_pane(session, principal, context, task)
    return fragment(request, "runs/_log_pane.html", context)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(
    run_id: uuid.UUID,
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_operate),
) -> Response:
    """Cancel a queued or running run (running tasks are killed), then show it."""
    await runs_service.cancel_run(session, redis, principal, run_id)
    return redirect(request, f"/runs/{run_id}")


@router.post("/runs/{run_id}/rerun")
async def rerun(
    run_id: uuid.UUID,
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_operate),
    from_failed: Annotated[bool, Form()] = False,
) -> Response:
    """Run again with the same job version and params (``from_failed``: keep what
    succeeded and run only the rest), then show the new run."""
    run = await runs_service.rerun(session, redis, principal, run_id, from_failed=from_failed)
    return redirect(request, f"/runs/{run.id}")

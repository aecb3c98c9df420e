"""The run page's live parts over Server-Sent Events, for htmx's SSE extension.

- ``/runs/{id}/live``: the run's header, DAG and task table, rendered again whenever the
  tenant's update stream (``events.service.read_updates``) carries a change of this run;
  ``end`` once the run has finished.
- ``/runs/{id}/tasks/{task}/logs/live``: a task's log lines as they are written
  (``events.service.follow_log_lines``), attempt after attempt; ``end`` when the task is
  over.

Both look the run up in the caller's tenant before streaming (another tenant's run is a
404 page) and carry the session cookies a rotation may have decided on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.core.db import SessionDep, scope_to_tenant
from backend.core.deps import RedisDep
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.live import service as events_service
from backend.runs import service as runs_service
from backend.runs.models import TaskRun
from backend.runs.schemas import LogLinePublic
from backend.web.render import fragment
from backend.web.runs_view import (
    SSE_END,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    SSE_RETRY,
    run_context,
    sse_event,
)
from backend.web.session import WebAuthorized, apply_cookies
from kernel.dag.status import FINISHED_TASK

router = APIRouter(include_in_schema=False)

# Without any update, the run is read again after this many keep-alives (~4 s each): a
# live view that missed an update (the stream is best effort) still catches up.
REFRESH_EVERY_KEEPALIVES = 5
# At most one rendering per this many seconds: a burst of task updates (a wide fan-out
# finishing) becomes one fragment showing all of them.
MIN_RENDER_INTERVAL_SECONDS = 0.5
NEXT_ATTEMPT_POLL_SECONDS = 0.5


def _stream(request: Request, frames: AsyncIterator[str]) -> StreamingResponse:
    response = StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
    apply_cookies(request, response)
    return response


@router.get("/runs/{run_id}/live", response_class=StreamingResponse)
async def run_live(
    run_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_read),
) -> StreamingResponse:
    """The run page's header, DAG and task table as ``run`` events whenever the run
    changes; ``end`` once it has finished."""
    await runs_service.get_run(session, principal, run_id)  # 404 before streaming
    return _stream(request, _run_frames(request, redis, principal, run_id))


async def _render_run(
    request: Request, principal: Principal, run_id: uuid.UUID
) -> tuple[str, bool]:
    """The live part of the run page as it is now, and whether the run has finished."""
    async with request.app.state.sessionmaker() as session:
        await scope_to_tenant(session, principal.tenant_id)
        context = await run_context(session, principal, run_id)
    html = fragment(request, "runs/_live.html", context).body
    return bytes(html).decode(), bool(context["finished"])


async def _run_frames(
    request: Request, redis: Redis, principal: Principal, run_id: uuid.UUID
) -> AsyncIterator[str]:
    # Listen from before the first rendering: no change can fall between the two.
    position = await events_service.latest_update_id(redis, principal.tenant_id)
    yield SSE_RETRY
    html, finished = await _render_run(request, principal, run_id)
    yield sse_event("run", html)
    if finished:
        yield SSE_END
        return
    updates = events_service.read_updates(
        redis,
        principal.tenant_id,
        after=position,
        run_id=run_id,
        job_id=None,
        disconnected=request.is_disconnected,
    )
    quiet = 0
    loop = asyncio.get_running_loop()
    rendered_at = loop.time()
    try:
        async for batch in updates:
            if batch is None:
                quiet += 1
                if quiet % REFRESH_EVERY_KEEPALIVES:
                    yield SSE_KEEPALIVE
                    continue
            elif not batch:
                continue
            await asyncio.sleep(max(0.0, rendered_at + MIN_RENDER_INTERVAL_SECONDS - loop.time()))
            latest, finished = await _render_run(request, principal, run_id)
            rendered_at = loop.time()
            if latest != html:
                html = latest
                yield sse_event("run", html)
            else:
                yield SSE_KEEPALIVE
            if finished:
                yield SSE_END
                return
    except RedisError:
        return  # the browser reconnects (``retry``) and starts from a fresh rendering


@router.get("/runs/{run_id}/tasks/{task}/logs/live", response_class=StreamingResponse)
async def task_logs_live(
    run_id: uuid.UUID,
    task: str,
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.runs_read),
    attempt: Annotated[int | None, Query(ge=1, le=1000)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> StreamingResponse:
    """A task's log lines after ``after`` of ``attempt`` (default: its current one) as
    ``log`` events of HTML, then those of each retry; ``end`` when the task is over."""
    await runs_service.task_state(session, principal, run_id, task=task)  # 404 first
    frames = _log_frames(request, principal, run_id, task=task, attempt=attempt, after=after)
    return _stream(request, frames)


def _render_lines(request: Request, lines: list[LogLinePublic], attempt: int) -> str:
    html = fragment(request, "runs/_log_lines.html", {"lines": lines, "shown_attempt": attempt})
    return bytes(html.body).decode()


async def _log_frames(
    request: Request,
    principal: Principal,
    run_id: uuid.UUID,
    *,
    task: str,
    attempt: int | None,
    after: int,
) -> AsyncIterator[str]:
    yield SSE_RETRY
    sessionmaker = request.app.state.sessionmaker
    while True:
        last = None
        async for tail in events_service.follow_log_lines(
            sessionmaker,
            principal,
            run_id,
            task=task,
            attempt=attempt,
            after_seq=after,
            disconnected=request.is_disconnected,
        ):
            last = tail
            if tail.lines:
                yield sse_event("log", _render_lines(request, tail.lines, tail.attempt))
        if last is None or last.lines:
            return  # the browser has gone
        state = await _after_attempt(request, principal, run_id, task, last.attempt)
        if state is None:
            return
        if state.attempt <= last.attempt:  # no attempt follows: the task is over
            yield sse_event("log", _render_turn(request, "runs/_log_end.html", state))
            yield SSE_END
            return
        attempt, after = state.attempt, 0
        yield sse_event("log", _render_turn(request, "runs/_log_attempt.html", state))


def _render_turn(request: Request, template: str, state: TaskRun) -> str:
    """A marker in the log (next attempt, or the end) with the pane's task line updated."""
    context = {
        "name": state.name,
        "status": state.status,
        "attempt": state.attempt,
        "max_attempts": state.max_attempts,
        "live": state.status not in FINISHED_TASK,
    }
    marker = fragment(request, template, context).body
    line = fragment(request, "runs/_log_status.html", {**context, "oob": True}).body
    return bytes(marker).decode() + bytes(line).decode()


async def _after_attempt(
    request: Request, principal: Principal, run_id: uuid.UUID, task: str, ended: int
) -> TaskRun | None:
    """The task once attempt ``ended`` is followed by another or the task is over; None
    if the browser has gone first."""
    while not await request.is_disconnected():
        async with request.app.state.sessionmaker() as session:
            await scope_to_tenant(session, principal.tenant_id)
            state = await runs_service.task_state(session, principal, run_id, task=task)
        if state.attempt > ended or state.status in FINISHED_TASK:
            return state
        await asyncio.sleep(NEXT_ATTEMPT_POLL_SECONDS)
    return None

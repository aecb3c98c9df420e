"""Server-Sent Events: live run/task state changes and live log tails."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep
from backend.core.errors import ValidationFailed
from backend.core.openapi import AUTHENTICATED, BY_ID, Responses
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.live import service
from backend.runs import service as runs_service

router = APIRouter(prefix="/api/v1", tags=["events"], responses=AUTHENTICATED)

STREAM: Responses = {
    200: {
        "description": "Server-Sent Events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/events", response_class=StreamingResponse, responses=STREAM)
async def events(
    request: Request,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.runs_read),
    run_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=50)] = None,
) -> StreamingResponse:
    """Run and task state changes of the caller's tenant, as they happen (text/event-stream).

    Filter with ``run_id`` or ``job_id``. Reconnect with ``Last-Event-ID`` to resume
    without losing events (within the bounded history kept per tenant).
    """
    resume = service.valid_event_id(last_event_id)
    if last_event_id and resume is None:
        raise ValidationFailed(
            "Last-Event-ID is not an event id Baton sent",
            details=[{"loc": ["header", "Last-Event-ID"], "msg": "invalid", "type": "value_error"}],
        )
    stream = service.stream_updates(
        redis,
        principal.tenant_id,
        last_event_id=resume,
        run_id=run_id,
        job_id=job_id,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/runs/{run_id}/logs/stream",
    response_class=StreamingResponse,
    responses={**STREAM, **BY_ID},
)
async def stream_logs(
    run_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    task: Annotated[str, Query(min_length=1, max_length=100)],
    attempt: Annotated[int | None, Query(ge=1, le=1000)] = None,
    principal: Principal = Authorized(Permission.runs_read),
) -> StreamingResponse:
    """A task attempt's log lines while it runs (text/event-stream); ``end`` when it ends."""
    await runs_service.tail_logs(
        session, principal, run_id, task=task, attempt=attempt, after_seq=0
    )
    stream = service.stream_log_lines(
        request.app.state.sessionmaker,
        principal,
        run_id,
        task=task,
        attempt=attempt,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

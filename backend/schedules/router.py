"""A job's schedule: pause, resume, the tick ledger, a preview of the next fire times."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep
from backend.core.openapi import AUTHENTICATED, BY_ID
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.core.schemas import Instant
from backend.schedules import service
from backend.schedules.schemas import (
    FirePreview,
    FireTime,
    SchedulePublic,
    TickPage,
    TickPublic,
)

router = APIRouter(prefix="/api/v1/jobs", tags=["schedules"], responses=AUTHENTICATED | BY_ID)


@router.post("/{job_id}/pause", response_model=SchedulePublic)
async def pause(
    job_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.runs_operate),
) -> SchedulePublic:
    """Stop the schedule firing. Instants due meanwhile follow its misfire policy later."""
    return SchedulePublic.model_validate(await service.pause(session, redis, principal, job_id))


@router.post("/{job_id}/resume", response_model=SchedulePublic)
async def resume(
    job_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.runs_operate),
) -> SchedulePublic:
    """Fire again."""
    return SchedulePublic.model_validate(await service.resume(session, redis, principal, job_id))


@router.get("/{job_id}/schedule/ticks", response_model=TickPage)
async def list_ticks(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.runs_read),
    outcome: Literal["fired", "skipped", "missed", "planned", "superseded"] | None = None,
    cursor: Instant | None = Query(default=None, description="next_cursor of the last page"),
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TickPage:
    """Every instant the schedule was due, newest first, and what came of it: fired (with
    the run), skipped or missed - with the reason."""
    ticks, next_cursor = await service.list_ticks(
        session, principal, job_id, limit=limit, before=cursor, outcome=outcome
    )
    return TickPage(
        items=[TickPublic.model_validate(t) for t in ticks],
        next_cursor=next_cursor.isoformat() if next_cursor else None,
    )


@router.get("/{job_id}/schedule/next", response_model=FirePreview)
async def next_fire_times(
    job_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
    count: Annotated[int, Query(ge=1, le=100)] = 10,
    after: Instant | None = Query(default=None, description="ISO instant; default now"),
) -> FirePreview:
    """The next fire times (UTC and local) after now or ``after``, DST policy applied."""
    ticks = await service.preview(session, principal, job_id, count=count, after=after)
    row = await service.schedule_of(session, principal, job_id)
    return FirePreview(
        timezone=row.spec.get("timezone") or "UTC",
        items=[
            FireTime(utc=t.instant, local=t.local, wall_time=t.wall.isoformat(), note=t.note)
            for t in ticks
            if t.instant is not None and t.local is not None
        ],
    )

"""The tenant's audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.audit import service
from backend.audit.schemas import AuditEventPublic, AuditOutcome, AuditPage
from backend.core.db import SessionDep
from backend.core.deps import Authorized
from backend.core.openapi import AUTHENTICATED
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.core.schemas import Instant

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=AUTHENTICATED)


@router.get("", response_model=AuditPage)
async def list_audit_events(
    session: SessionDep,
    principal: Principal = Authorized(Permission.audit_read),
    action: Annotated[
        str | None, Query(max_length=100, description="e.g. auth or auth.login.failed")
    ] = None,
    actor: Annotated[str | None, Query(max_length=320, description="Actor id or email")] = None,
    outcome: Annotated[
        AuditOutcome | None, Query(description="success or failure (e.g. refused logins)")
    ] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Audit events newest first; ``action`` matches the name or a dotted prefix of it."""
    events, next_cursor = await service.list_events(
        session,
        principal,
        limit=limit,
        cursor=cursor,
        action=action,
        actor=actor,
        outcome=outcome,
        since=since,
        until=until,
    )
    return AuditPage(
        items=[AuditEventPublic.model_validate(e) for e in events],
        next_cursor=str(next_cursor) if next_cursor is not None else None,
    )

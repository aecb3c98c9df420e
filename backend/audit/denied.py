"""Denied requests in the audit log: every authenticated call answered 403 or 404.

A 404 is what another tenant's object looks like (row-level security hides it), so an
authenticated principal probing for other tenants' ids leaves a trail in its own tenant's
log, as does a role reaching for what it may not do. The request's own transaction is
rolled back, so the event is written in a transaction of its own (it extends the
tenant's hash chain under the same per-tenant lock as every other append). Failing to
write it never turns the answer into a 500: it is logged instead.
"""

from __future__ import annotations

import structlog
from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.db import tenant_transaction
from backend.core.errors import BatonError
from backend.core.principal import Principal

log = structlog.get_logger(__name__)

DENIED_ACTION = "request.denied"
_MAX_PATH = 500


def request_principal(request: Request) -> Principal | None:
    """The principal this request authenticated as (API bearer or dashboard session)."""
    principal = getattr(request.state, "principal", None) or getattr(
        request.state, "web_principal", None
    )
    return principal if isinstance(principal, Principal) else None


async def record_denied(request: Request, error: BatonError) -> None:
    """Record ``request.denied`` (outcome ``denied``) in the principal's tenant."""
    principal = request_principal(request)
    sessionmaker: async_sessionmaker[AsyncSession] | None = getattr(
        request.app.state, "sessionmaker", None
    )
    if principal is None or sessionmaker is None:
        return
    try:
        async with tenant_transaction(sessionmaker, principal.tenant_id) as session:
            await audit.record(
                session,
                tenant_id=principal.tenant_id,
                actor=principal.actor,
                origin=principal.origin,
                action=DENIED_ACTION,
                outcome="denied",
                target_type="request",
                details={
                    "method": request.method,
                    "path": request.url.path[:_MAX_PATH],
                    "status": error.status_code,
                    "code": error.code,
                },
            )
    except (SQLAlchemyError, OSError) as failure:
        log.warning(
            "audit.denied_not_recorded",
            tenant_id=str(principal.tenant_id),
            path=request.url.path[:_MAX_PATH],
            error=type(failure).__name__,
        )

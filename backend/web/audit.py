"""Dashboard pages: the tenant's audit log, with filters, paging and its hash-chain check.

The list is ``audit.service.list_events`` - the query behind ``GET /api/v1/audit`` - with
the same filters and cursor. The chain check (``audit.service.verify_chain``) walks the
whole log, so the page loads it separately (``/audit/chain``) and the list never waits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from backend.audit import service as audit_service
from backend.audit.schemas import AuditOutcome
from backend.core.db import SessionDep
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.web.render import fragment, page
from backend.web.session import WebAuthorized

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_CURSOR = 2**62

FilterText = Annotated[str, Query(max_length=320)]


def parse_instant(value: str) -> datetime:
    """An ISO 8601 instant; without an offset (a datetime-local input) it is UTC."""
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def read_filters(query: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The service's filter arguments from the form's values, and a message per bad field."""
    errors: dict[str, str] = {}
    filters: dict[str, Any] = {
        "action": query["action"].strip() or None,
        "actor": query["actor"].strip() or None,
        "outcome": None,
        "since": None,
        "until": None,
        "cursor": None,
    }
    if len(query["action"]) > 100:
        errors["action"] = "At most 100 characters"
    if query["outcome"]:
        if query["outcome"] in set(AuditOutcome):
            filters["outcome"] = query["outcome"]
        else:
            errors["outcome"] = "Choose success or failure"
    for name in ("since", "until"):
        if query[name].strip():
            try:
                filters[name] = parse_instant(query[name])
            except ValueError:
                errors[name] = "Not a date and time (YYYY-MM-DDTHH:MM, UTC)"
    if filters["since"] and filters["until"] and filters["since"] >= filters["until"]:
        errors["until"] = "Must be after 'since'"
    if query["cursor"]:
        if query["cursor"].isdigit() and 1 <= int(query["cursor"]) <= MAX_CURSOR:
            filters["cursor"] = int(query["cursor"])
        else:
            errors["cursor"] = "Invalid page cursor; start again from the first page"
    return filters, errors


@router.get("/audit")
async def audit_log(
    request: Request,
    session: SessionDep,
    action: FilterText = "",
    actor: FilterText = "",
    outcome: FilterText = "",
    since: FilterText = "",
    until: FilterText = "",
    cursor: FilterText = "",
    principal: Principal = WebAuthorized(Permission.audit_read),
) -> Response:
    """The audit log, newest first, filtered by action (or its dotted prefix), actor (id or
    email), outcome and time range; 50 events a page."""
    values = {
        "action": action,
        "actor": actor,
        "outcome": outcome,
        "since": since,
        "until": until,
        "cursor": cursor,
    }
    filters, errors = read_filters(values)
    context: dict[str, Any] = {
        "principal": principal,
        "section": "audit",
        "values": values,
        "errors": errors,
        "outcomes": list(AuditOutcome),
        "events": [],
        "next_url": None,
        "filtered": any(values[k] for k in ("action", "actor", "outcome", "since", "until")),
    }
    if errors:
        return page(request, "audit/index.html", context, status=422)
    events, next_cursor = await audit_service.list_events(
        session, principal, limit=PAGE_SIZE, **filters
    )
    context["events"] = events
    if next_cursor is not None:
        kept = {k: v for k, v in values.items() if v and k != "cursor"}
        context["next_url"] = "/audit?" + urlencode({**kept, "cursor": next_cursor})
    return page(request, "audit/index.html", context)


@router.get("/audit/chain")
async def audit_chain(
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.audit_read),
) -> Response:
    """The hash-chain check of the whole log, as a badge (loaded by the audit page)."""
    settings = request.app.state.settings
    keys = audit_service.checkpoint_keys(settings.secrets_keks) if settings.secrets_kek else None
    report = await audit_service.verify_chain(session, principal.tenant_id, checkpoint_keys=keys)
    return fragment(request, "audit/_chain.html", {"report": report})

"""The error answers each kind of route documents in the OpenAPI schema.

Every 4xx/5xx has one body, ``{"error": {"code", "message", "details"}}``
(``backend.core.errors``); these mappings name it for each status a route can answer, so a
client generated from ``/openapi.json`` knows every outcome. They are combined per router
and per route (``responses=``); the app adds :data:`ANY_ROUTE` to every operation, and its
422 replaces FastAPI's default ``HTTPValidationError`` (which is not what Baton sends).
A test fuzzes every operation and fails on a status the schema does not list.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_failed")
    message: str = Field(description="A sentence for people")
    details: Any = Field(
        default=None,
        description='More about the problem; for 422s a list of {"loc", "msg", "type"}',
    )


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request",
    402: "A limit of the tenant's plan is reached (quota_exceeded: which, usage, reset)",
    401: "Authentication required, or the credentials are not valid",
    403: "The caller's role may not do this (or the tenant is suspended)",
    404: "Not found (another tenant's object is not found either)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "The input is not valid: the request's own rules or the input policy",
    429: "Too many attempts (or the plan's API requests per minute: quota_exceeded); retry "
    "after the Retry-After header's seconds",
    503: "A backing service (PostgreSQL, Redis) is not reachable; retry shortly",
}

Responses = dict[int | str, dict[str, Any]]


def errors(*statuses: int) -> Responses:
    """``responses=`` entries for these error statuses, each with the error body."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


# Any request: the input policy and request validation (422), the body cap (413), an outage.
ANY_ROUTE = errors(413, 422, 503)
# Routers whose every route needs a caller (a bearer token) with a permission; every
# authenticated request counts against the plan's API requests per minute (429).
AUTHENTICATED = errors(401, 403, 429)
# Routes that name an object in the path.
BY_ID = errors(404)
CONFLICT = errors(409)
THROTTLED = errors(429)
# Routes that create what a plan limits (runs, members, scheduled jobs).
QUOTA = errors(402)

"""Baton's exception hierarchy and the one handler that turns it into JSON.

Every error a client can see is a ``BatonError``; the handler renders each of them,
FastAPI's validation errors and Starlette's HTTP errors as::

    {"error": {"code": "not_found", "message": "Job not found", "details": {...}}}

with the request id in the ``X-Request-ID`` header. On the web dashboard's paths the same
errors are rendered as HTML pages by the ``HtmlErrors`` the app installs (a missing session
becomes a redirect to the login page). Anything else is a bug: the request
middleware (``backend.core.middleware``) logs it with its traceback and answers a 500 of
the same shape, never a stack trace.

    BatonError                      500 internal_error
    ├── BadRequest                  400 bad_request
    ├── AuthenticationRequired      401 unauthenticated
    │   ├── InvalidCredentials      401 invalid_credentials   (commits its side effects)
    │   ├── InvalidToken            401 invalid_token
    │   └── RefreshTokenReused      401 refresh_token_reused  (commits its side effects)
    ├── PermissionDenied            403 forbidden
    │   ├── TenantSuspended         403 tenant_suspended
    │   ├── EmailUnverified         403 email_unverified
    │   └── CsrfFailed              403 csrf_failed
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    ├── PayloadTooLarge             413 payload_too_large
    ├── ValidationFailed            422 validation_failed
    ├── QuotaExceeded               402/429 quota_exceeded (a plan's limit; details name it)
    ├── RateLimited                 429 rate_limited
    └── ServiceUnavailable          503 service_unavailable

PostgreSQL or Redis being unreachable (SQLAlchemy's OperationalError/InterfaceError,
redis-py's ConnectionError/TimeoutError, a refused socket) is answered 503
``service_unavailable`` too.

``commit_side_effects``: a few failures are also facts to keep - a failed login's audit
row and throttle count, a reused refresh token's revoked family. The session dependency
commits instead of rolling back when the error carries this flag.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class BatonError(Exception):
    status_code = 500
    code = "internal_error"
    commit_side_effects = False

    def __init__(
        self,
        message: str = "Internal server error",
        *,
        details: dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class BadRequest(BatonError):
    status_code = 400
    code = "bad_request"


class AuthenticationRequired(BatonError):
    status_code = 401
    code = "unauthenticated"

    def __init__(self, message: str = "Authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class InvalidCredentials(AuthenticationRequired):
    code = "invalid_credentials"
    commit_side_effects = True


class InvalidToken(AuthenticationRequired):
    code = "invalid_token"


class RefreshTokenReused(AuthenticationRequired):
    code = "refresh_token_reused"
    commit_side_effects = True


class InvalidSignature(BatonError):
    """A signed request (an inbound webhook) whose signature is missing, wrong or old."""

    status_code = 401
    code = "invalid_signature"


class PermissionDenied(BatonError):
    status_code = 403
    code = "forbidden"


class TenantSuspended(PermissionDenied):
    code = "tenant_suspended"


class EmailUnverified(PermissionDenied):
    """The installation requires a verified email address for this (running jobs)."""

    code = "email_unverified"


class CsrfFailed(PermissionDenied):
    """A dashboard form arrived without the CSRF token of the browser that loaded it."""

    code = "csrf_failed"


class NotFound(BatonError):
    status_code = 404
    code = "not_found"


class Conflict(BatonError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(BatonError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(BatonError):
    status_code = 422
    code = "validation_failed"


class QuotaExceeded(BatonError):
    """A plan's limit is reached. 402 for what a bigger plan buys (runs, task-seconds,
    members, scheduled jobs), 429 for a rate that frees up by itself (API requests per
    minute). ``details``: the limit's name, its value, the usage and when it resets (None:
    it never resets by itself, e.g. members)."""

    code = "quota_exceeded"

    def __init__(
        self,
        limit: str,
        *,
        allowed: int,
        usage: int,
        resets_at: str | None,
        status_code: int = 402,
        retry_after: int | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(
            f"Your plan's limit {limit!r} is reached ({usage} of {allowed})",
            details={"limit": limit, "allowed": allowed, "usage": usage, "resets_at": resets_at},
            headers=headers,
        )
        self.status_code = status_code


class RateLimited(BatonError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(BatonError):
    status_code = 503
    code = "service_unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class HtmlErrors(Protocol):
    """How the web dashboard answers errors on its own paths."""

    def handles(self, request: Request) -> bool: ...

    async def baton_error(self, request: Request, exc: BatonError) -> Response: ...

    async def http_error(self, request: Request, status: int, message: str) -> Response: ...


def _html(request: Request) -> HtmlErrors | None:
    html: HtmlErrors | None = getattr(request.app.state, "html_errors", None)
    return html if html is not None and html.handles(request) else None


# Called with every 403/404 BatonError before it is answered (the audit log's
# ``record_denied``; installed by the app so this module imports no domain package).
DeniedHook = Callable[[Request, "BatonError"], Awaitable[None]]


async def error_response(request: Request, exc: BatonError) -> Response:
    """The answer to ``exc``: the JSON error shape, or the dashboard's HTML page on its paths.
    Also used by middleware that refuses a request before it reaches the app's handlers."""
    if html := _html(request):
        return await html.baton_error(request, exc)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if html := _html(request):
        return await html.http_error(request, 422, "The request is not valid")
    problems = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return JSONResponse(
        error_body("validation_failed", "The request is not valid", problems), status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if (html := _html(request)) and exc.status_code != 413:
        return await html.http_error(request, exc.status_code, str(exc.detail))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _backing_service_down(request: Request, exc: Exception) -> Response:
    log.warning("http.backing_service_unavailable", error=type(exc).__name__)
    if html := _html(request):
        return await html.http_error(request, 503, "A backing service is not reachable; retry")
    return JSONResponse(
        error_body("service_unavailable", "A backing service is not reachable; retry shortly"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _baton_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BatonError)
    on_denied: DeniedHook | None = getattr(request.app.state, "on_denied", None)
    if on_denied is not None and exc.status_code in (403, 404):
        await on_denied(request, exc)
    return await error_response(request, exc)


def install_error_handlers(app: FastAPI, *, on_denied: DeniedHook | None = None) -> None:
    """Map every error to the one JSON shape; ``on_denied`` sees every 403 and 404."""
    app.state.on_denied = on_denied
    app.add_exception_handler(BatonError, _baton_error)
    # PostgreSQL or Redis unreachable is an outage to wait out (503), not a bug (500).
    for outage in (
        OperationalError,
        InterfaceError,
        RedisConnectionError,
        RedisTimeoutError,
        ConnectionError,  # asyncpg lets a refused connection through as the builtin error
        socket.gaierror,
    ):
        app.add_exception_handler(outage, _backing_service_down)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

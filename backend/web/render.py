"""Rendering dashboard pages: the Jinja2 environment, page and redirect answers, error pages.

Every dashboard answer goes through :func:`page`, :func:`fragment` or :func:`redirect`, which
write the cookies the request decided on (session rotation, CSRF). Errors raised on a
dashboard path are answered by :func:`render_error` as an HTML page with the same status
the API would give (a missing session redirects to /login instead).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError

from backend.core.errors import AuthenticationRequired, BatonError
from backend.core.settings import Settings
from backend.web.csrf import CSRF_FIELD, csrf_token
from backend.web.session import apply_cookies, forget_rotation, web_allows

REPO_FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def frontend_dir(settings: Settings) -> Path:
    return settings.frontend_dir or REPO_FRONTEND


def format_instant(value: datetime | None) -> str:
    """An instant as UTC, to the second (the browser shows the same text for everyone)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | timedelta | None) -> str:
    if seconds is None:
        return "-"
    total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    if total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def duration_between(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    return format_duration((end or datetime.now(UTC)) - start)


def create_templates(settings: Settings) -> Jinja2Templates:
    templates = Jinja2Templates(directory=frontend_dir(settings) / "templates")
    env = templates.env
    env.filters["instant"] = format_instant
    env.filters["duration"] = format_duration
    env.globals["duration_between"] = duration_between
    env.globals["can"] = web_allows
    env.globals["is_dev"] = settings.is_dev
    return templates


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def _context(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    token = csrf_token(request)
    return {
        "request": request,
        "principal": None,
        "csrf_token": token,
        "csrf_field": Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, token
        ),
        **context,
    }


def page(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A whole page (or, for an htmx request, the same template's rendering)."""
    response = _templates(request).TemplateResponse(
        request, template, _context(request, context or {}), status_code=status
    )
    apply_cookies(request, response)
    return response


def fragment(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A partial for htmx to swap in; same rendering, named for intent at call sites."""
    return page(request, template, context, status=status)


def form_problems(error: ValidationError) -> dict[str, str]:
    """Pydantic errors as field -> message, for showing next to each input (an item of a
    list field counts as the field: ``("events", 0)`` is ``events``)."""
    return {_field_of(e["loc"]): e["msg"] for e in error.errors()}


def _field_of(loc: tuple[int | str, ...]) -> str:
    return next((part for part in reversed(loc) if isinstance(part, str)), "form")


def safe_next(target: str | None, default: str = "/jobs") -> str:
    """A post-login destination on this site only (no scheme, host or protocol-relative)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


def redirect(request: Request, url: str, *, status: int = 303) -> Response:
    """See other: after a form post, or to send a browser elsewhere.

    For an htmx request the answer is ``HX-Redirect`` so the whole page navigates.
    """
    response: Response
    if request.headers.get("hx-request") == "true":
        response = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=status)
    apply_cookies(request, response)
    return response


# The dashboard's own path roots; any other path is the dashboard's too when a browser
# navigates to it (asks for HTML). API clients keep the JSON error shape everywhere else.
DASHBOARD_ROOTS = (
    "/signup",
    "/login",
    "/logout",
    "/verify-email",
    "/forgot-password",
    "/reset-password",
    "/accept-invitation",
    "/dev",
    "/jobs",
    "/runs",
    "/templates",
    "/settings",
    "/audit",
    "/admin",
    "/static",
)
NOT_DASHBOARD = (
    "/api/",
    "/hooks/",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
)


def is_dashboard_request(path: str, accept: str) -> bool:
    if path.startswith(NOT_DASHBOARD):
        return False
    if path == "/" or any(path == root or path.startswith(root + "/") for root in DASHBOARD_ROOTS):
        return True
    return "text/html" in accept


async def render_error(request: Request, exc: BatonError) -> Response:
    """The HTML answer for an error raised on a dashboard path."""
    if not exc.commit_side_effects:
        # The request's transaction is rolled back, a session rotation with it: the browser
        # keeps the cookies it has (still valid), not ones the database never stored.
        await forget_rotation(request)
    if isinstance(exc, AuthenticationRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(request, f"/login?next={quote(target, safe='')}")
    return page(
        request,
        "error.html",
        {"status": exc.status_code, "code": exc.code, "message": exc.message},
        status=exc.status_code,
    )


async def render_http_error(request: Request, status: int, message: str) -> Response:
    code = {404: "not_found", 405: "method_not_allowed", 422: "validation_failed"}.get(
        status, "http_error"
    )
    return page(
        request, "error.html", {"status": status, "code": code, "message": message}, status=status
    )


class DashboardErrors:
    """``core.errors.HtmlErrors`` for the dashboard: every path outside the API's."""

    def handles(self, request: Request) -> bool:
        return is_dashboard_request(request.url.path, request.headers.get("accept", ""))

    async def baton_error(self, request: Request, exc: BatonError) -> Response:
        return await render_error(request, exc)

    async def http_error(self, request: Request, status: int, message: str) -> Response:
        return await render_http_error(request, status, message)

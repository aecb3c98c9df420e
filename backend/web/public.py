"""Public dashboard pages: landing, signup, login, logout."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError

from backend.auth import service as auth_service
from backend.auth.schemas import LoginRequest, SignupRequest
from backend.core.db import SessionDep
from backend.core.deps import OriginDep, RedisDep, SettingsDep
from backend.core.errors import BadRequest, BatonError
from backend.web.csrf import CsrfChecked
from backend.web.render import form_problems, frontend_dir, page, redirect, safe_next
from backend.web.session import (
    REFRESH_COOKIE,
    MaybeWebPrincipal,
    clear_session_cookies,
    read_cookie,
    set_session_cookies,
)

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1024)]


@router.get("/")
async def landing(request: Request, principal: MaybeWebPrincipal) -> Response:
    """The landing page; a logged-in browser goes straight to its jobs."""
    if principal is not None:
        return redirect(request, "/jobs")
    return page(request, "public/landing.html")


@router.get("/favicon.ico")
async def favicon(settings: SettingsDep) -> Response:
    """The icon browsers ask for at this fixed path (pages also link it from /static)."""
    return FileResponse(
        frontend_dir(settings) / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/signup")
async def signup_form(request: Request, principal: MaybeWebPrincipal) -> Response:
    """The hosted signup form: a new tenant and its owner."""
    return page(request, "public/signup.html", {"principal": principal, "values": {}})


@router.post("/signup")
async def signup(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
    email: FormText = "",
    password: FormText = "",
    tenant_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Create the tenant and its owner, log the browser in, and open the jobs page."""
    values = {"email": email, "tenant_name": tenant_name}
    try:
        body = SignupRequest(email=email, password=password, tenant_name=tenant_name)
        result = await auth_service.signup(
            session,
            settings,
            email=body.email,
            password=body.password,
            tenant_name=body.tenant_name,
            origin=origin,
            redis=redis,
        )
    except ValidationError as error:
        return _form_error(request, "public/signup.html", values, errors=form_problems(error))
    except BatonError as error:
        if error.status_code >= 500:
            raise
        return _form_error(
            request, "public/signup.html", values, message=error.message, status=error.status_code
        )
    set_session_cookies(request, settings, result.tokens)
    return redirect(request, "/jobs?welcome=1")


@router.get("/login")
async def login_form(
    request: Request,
    principal: MaybeWebPrincipal,
    next_url: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
) -> Response:
    """The login form; ``next`` is where to go afterwards (this site only)."""
    if principal is not None:
        return redirect(request, safe_next(next_url))
    return page(request, "public/login.html", {"values": {}, "next": safe_next(next_url)})


@router.post("/login")
async def login(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
    email: FormText = "",
    password: FormText = "",
    tenant: Annotated[str, Form(max_length=63)] = "",
    next_url: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    """Check the password, set the session cookies, and go on to ``next``."""
    values: dict[str, Any] = {"email": email, "tenant": tenant}
    context: dict[str, Any] = {"next": safe_next(next_url)}
    try:
        body = LoginRequest(email=email, password=password, tenant=tenant or None)
        tokens = await auth_service.login(
            session,
            redis,
            settings,
            email=body.email,
            password=body.password,
            tenant_slug=body.tenant,
            origin=origin,
        )
    except ValidationError as error:
        return _form_error(
            request, "public/login.html", values, errors=form_problems(error), context=context
        )
    except BadRequest as error:
        # The account belongs to several tenants: ask which one.
        tenants = error.details.get("tenants", []) if isinstance(error.details, dict) else []
        return _form_error(
            request,
            "public/login.html",
            {**values, "tenant_choices": tenants},
            message=error.message,
            status=400,
            context=context,
        )
    except BatonError as error:
        # Answered here, so the session dependency commits what a failed login keeps
        # (its audit row, the throttle count).
        if error.status_code >= 500:
            raise
        return _form_error(
            request,
            "public/login.html",
            values,
            message=error.message,
            status=error.status_code,
            context=context,
        )
    set_session_cookies(request, settings, tokens)
    return redirect(request, safe_next(next_url))


@router.post("/logout")
async def logout(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: MaybeWebPrincipal,
) -> Response:
    """End this browser's session (its refresh-token family and access token)."""
    if principal is not None:
        raw_refresh = read_cookie(request, REFRESH_COOKIE)
        try:
            await auth_service.logout(session, redis, principal, raw_refresh_token=raw_refresh)
        except BatonError as error:
            if error.status_code >= 500:
                raise
            # A refresh cookie that no longer matches: end every session of this user here.
            await auth_service.logout(session, redis, principal, raw_refresh_token=None)
    clear_session_cookies(request)
    return redirect(request, "/login")


def _form_error(
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 422,
    context: dict[str, Any] | None = None,
) -> Response:
    return page(
        request,
        template,
        {"values": values, "errors": errors or {}, "message": message, **(context or {})},
        status=status,
    )

"""Browser sessions for the dashboard: the same tokens as the API, carried in cookies.

A dashboard login issues the same access/refresh pair as ``POST /api/v1/auth/login`` and
stores them in HttpOnly, SameSite=Lax cookies (``Secure`` outside dev and test, see
``Settings.cookies_secure``). Each page authenticates the access cookie exactly as the API
authenticates a bearer token; once it has expired, the refresh cookie is rotated through
``auth.service.refresh`` - rotation and reuse detection included - and the new pair is set
on the response.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
from fastapi import Depends, Request, Response
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import service as auth_service
from backend.auth.schemas import TokenPair
from backend.core.db import SessionDep, after_commit
from backend.core.deps import (
    OriginDep,
    RedisDep,
    SettingsDep,
    check_permission,
    check_superuser,
)
from backend.core.errors import (
    AuthenticationRequired,
    BatonError,
    TenantSuspended,
)
from backend.core.permissions import Permission, allows
from backend.core.principal import Principal, RequestOrigin
from backend.core.security import hash_secret
from backend.core.settings import Settings
from kernel.wire import keys

log = structlog.get_logger(__name__)

ACCESS_COOKIE = "baton_access"
REFRESH_COOKIE = "baton_refresh"
# How long a rotated pair stays parked for requests that raced the rotation.
ROTATION_GRACE_SECONDS = 30
_ROTATION_PENDING = "pending"


def cookie_name(settings: Settings, name: str) -> str:
    """The name a cookie is sent under: ``__Host-`` prefixed when cookies are ``Secure``.

    A browser accepts a ``__Host-`` cookie only from this very host, over HTTPS, with
    ``Path=/`` and no ``Domain``: a sibling host cannot plant (toss) one. That is what
    keeps the forms before login (login, signup, password reset), whose CSRF token is
    bound to no user, safe from a planted CSRF cookie. Development over plain HTTP keeps
    the bare names (browsers refuse the prefix without ``Secure``)."""
    return f"__Host-{name}" if settings.cookies_secure else name


def read_cookie(request: Request, name: str) -> str | None:
    """The request's cookie ``name`` (under its :func:`cookie_name`)."""
    settings: Settings = request.app.state.settings
    return request.cookies.get(cookie_name(settings, name))


class LoginRequired(AuthenticationRequired):
    """No valid dashboard session: the page answers with a redirect to /login."""


def set_session_cookies(request: Request, settings: Settings, tokens: TokenPair) -> None:
    """Queue the session cookies; :func:`apply_cookies` writes them on the response."""
    pending = pending_cookies(request)
    pending[ACCESS_COOKIE] = (tokens.access_token, settings.refresh_token_ttl_seconds)
    pending[REFRESH_COOKIE] = (tokens.refresh_token, settings.refresh_token_ttl_seconds)


def clear_session_cookies(request: Request) -> None:
    pending = pending_cookies(request)
    pending[ACCESS_COOKIE] = None
    pending[REFRESH_COOKIE] = None


def pending_cookies(request: Request) -> dict[str, tuple[str, int] | None]:
    if not hasattr(request.state, "web_cookies"):
        request.state.web_cookies = {}
    pending: dict[str, tuple[str, int] | None] = request.state.web_cookies
    return pending


def apply_cookies(request: Request, response: Response) -> None:
    """Write the cookies this request decided on (session, CSRF) onto its response."""
    settings: Settings = request.app.state.settings
    for name, value in getattr(request.state, "web_cookies", {}).items():
        sent_as = cookie_name(settings, name)
        if value is None:
            response.delete_cookie(sent_as, path="/", secure=settings.cookies_secure, httponly=True)
            continue
        raw, max_age = value
        response.set_cookie(
            sent_as,
            raw,
            max_age=max_age,
            path="/",
            secure=settings.cookies_secure,
            httponly=True,
            samesite="lax",
        )


async def forget_rotation(request: Request) -> None:
    """Undo this request's session rotation (its transaction is being rolled back)."""
    pending = pending_cookies(request)
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        if pending.get(name) is not None:  # a rotated pair; clearing a dead session stays
            del pending[name]
    parked: str | None = getattr(request.state, "web_rotation", None)
    if parked is not None:
        redis: Redis = request.app.state.redis
        await redis.delete(parked)
        request.state.web_rotation = None


async def _rotate(
    request: Request,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    *,
    raw_refresh: str,
    origin: RequestOrigin,
) -> TokenPair:
    """Rotate the refresh cookie once, even when several requests present it together."""
    parked = keys.web_session_rotation(hash_secret(raw_refresh))
    if await redis.set(parked, _ROTATION_PENDING, nx=True, ex=ROTATION_GRACE_SECONDS):
        request.state.web_rotation = parked
        try:
            tokens = await auth_service.refresh(
                session, settings, raw_token=raw_refresh, origin=origin
            )
        except BaseException:
            await redis.delete(parked)
            raise

        async def park() -> None:
            await redis.set(parked, tokens.model_dump_json(), ex=ROTATION_GRACE_SECONDS)

        after_commit(session, park)
        return tokens
    # Another request is rotating this token: wait briefly for the pair it commits.
    for _ in range(50):
        value = await redis.get(parked)
        if value is None:
            break
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text != _ROTATION_PENDING:
            return TokenPair.model_validate_json(text)
        await asyncio.sleep(0.1)
    raise LoginRequired("Your session has ended; log in again")


async def optional_web_principal(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Principal | None:
    """The logged-in browser's principal, or None (public pages)."""
    access = read_cookie(request, ACCESS_COOKIE)
    if access:
        try:
            principal = await auth_service.authenticate(
                session, redis, settings, bearer=access, origin=origin
            )
            request.state.web_principal = principal  # the CSRF token is bound to it
            return principal
        except AuthenticationRequired:
            pass  # expired or revoked: fall through to the refresh cookie
        except TenantSuspended:
            # The session's tenant was suspended: it is over. Logging in again says why.
            clear_session_cookies(request)
            return None
    raw_refresh = read_cookie(request, REFRESH_COOKIE)
    if not raw_refresh:
        if access:
            clear_session_cookies(request)
        return None
    try:
        tokens = await _rotate(
            request, session, redis, settings, raw_refresh=raw_refresh, origin=origin
        )
        principal = await auth_service.authenticate(
            session, redis, settings, bearer=tokens.access_token, origin=origin
        )
    except (AuthenticationRequired, TenantSuspended) as error:
        # A reused refresh token revoked its family: that must be kept even though this
        # request ends in a redirect to the login page.
        request.state.web_session_side_effects = error.commit_side_effects
        clear_session_cookies(request)
        return None
    except BatonError as error:
        # A malformed cookie (BadRequest from the token parser) is no session either.
        if error.status_code != 400:
            raise
        clear_session_cookies(request)
        return None
    set_session_cookies(request, settings, tokens)
    log.info("web.session.rotated", tenant_id=str(principal.tenant_id))
    request.state.web_principal = principal
    return principal


MaybeWebPrincipal = Annotated[Principal | None, Depends(optional_web_principal)]


async def require_web_principal(request: Request, principal: MaybeWebPrincipal) -> Principal:
    if principal is None:
        error = LoginRequired()
        error.commit_side_effects = getattr(request.state, "web_session_side_effects", False)
        raise error
    return principal


WebPrincipal = Annotated[Principal, Depends(require_web_principal)]


def web_allows(principal: Principal, permission: Permission | str) -> bool:
    """What the templates ask before showing a button (the service checks again)."""
    return allows(principal.role, Permission(permission))


def WebAuthorized(permission: Permission) -> Principal:
    """``principal: Principal = WebAuthorized(Permission.jobs_write)`` for dashboard routes."""

    async def check(principal: WebPrincipal) -> Principal:
        return check_permission(principal, permission)

    check.required_permission = permission  # type: ignore[attr-defined]
    result: Principal = Depends(check)
    return result


async def require_web_superuser(principal: WebPrincipal) -> Principal:
    return check_superuser(principal)


WebSuperuser = Annotated[Principal, Depends(require_web_superuser)]

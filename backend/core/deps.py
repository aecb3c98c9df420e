"""FastAPI dependencies, as ``Annotated`` aliases.

``Authorized(Permission.x)`` is the one dependency that enforces the permission table;
every tenant route declares it (a test walks the app's routes to make sure).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import SessionDep
from backend.core.errors import AuthenticationRequired, PermissionDenied
from backend.core.permissions import Permission, allows
from backend.core.principal import Principal, RequestOrigin
from backend.core.settings import Settings

# The dependencies below are ``async def`` although they do no I/O: FastAPI runs a plain
# ``def`` dependency in a worker thread, and three thread hops per request cost more than
# everything else these functions do.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_origin(request: Request) -> RequestOrigin:
    return RequestOrigin(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
OriginDep = Annotated[RequestOrigin, Depends(get_origin)]


class Authenticate(Protocol):
    """Bearer credential to principal: ``backend.auth.service.authenticate``, which the app
    puts on ``app.state.authenticate`` (so this module imports no domain package)."""

    def __call__(
        self,
        session: AsyncSession,
        redis: Redis,
        settings: Settings,
        *,
        bearer: str,
        origin: RequestOrigin,
    ) -> Awaitable[Principal]: ...


_bearer = HTTPBearer(auto_error=False, description="A JWT access token or a Baton API token")


async def get_principal(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise AuthenticationRequired()
    authenticate: Authenticate = request.app.state.authenticate
    principal = await authenticate(
        session, redis, settings, bearer=credentials.credentials, origin=origin
    )
    request.state.principal = principal  # a denied request is audited as this principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def check_permission(principal: Principal, permission: Permission) -> Principal:
    """The one role check behind ``Authorized`` (API) and ``WebAuthorized`` (dashboard)."""
    if not allows(principal.role, permission):
        raise PermissionDenied(f"Your role ({principal.role}) may not {permission}")
    return principal


def check_superuser(principal: Principal) -> Principal:
    """The one platform-administrator check, for the API and the dashboard."""
    if not principal.is_superuser:
        raise PermissionDenied("Platform administrators only")
    return principal


def Authorized(permission: Permission) -> Any:
    """``principal: Principal = Authorized(Permission.jobs_write)``: authenticate, check role."""

    async def check(principal: CurrentPrincipal) -> Principal:
        return check_permission(principal, permission)

    check.required_permission = permission  # type: ignore[attr-defined]
    return Depends(check)


async def get_superuser(principal: CurrentPrincipal) -> Principal:
    return check_superuser(principal)


SuperuserPrincipal = Annotated[Principal, Depends(get_superuser)]

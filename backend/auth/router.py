"""Auth endpoints: sign-up, login, OAuth2 password form, refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, status

from backend.auth import service
from backend.auth.schemas import (
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    SignupRequest,
    SignupResponse,
    TenantPublic,
    TokenPair,
    UserPublic,
)
from backend.core.db import SessionDep
from backend.core.deps import Authorized, OriginDep, RedisDep, SettingsDep
from backend.core.errors import ValidationFailed
from backend.core.openapi import AUTHENTICATED, errors
from backend.core.permissions import Permission
from backend.core.principal import Principal

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupResponse,
    responses=errors(401, 409, 429),
)
async def signup(
    body: SignupRequest,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> SignupResponse:
    """Create a tenant and its owner; answers with a session in the new tenant.

    For an existing email the password must match, and wrong guesses count against the
    login throttle.
    """
    result = await service.signup(
        session,
        settings,
        email=body.email,
        password=body.password,
        tenant_name=body.tenant_name,
        origin=origin,
        redis=redis,
    )
    return SignupResponse(
        **result.tokens.model_dump(),
        tenant=TenantPublic.model_validate(result.tenant),
        user=UserPublic.model_validate(result.user),
    )


@router.post("/login", response_model=TokenPair, responses=errors(401, 403, 429))
async def login(
    body: LoginRequest,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> TokenPair:
    """Exchange email and password for an access and a refresh token.

    ``tenant`` (a slug) is needed only when the account belongs to several tenants.
    """
    return await service.login(
        session,
        redis,
        settings,
        email=body.email,
        password=body.password,
        tenant_slug=body.tenant,
        origin=origin,
    )


@router.post("/token", response_model=TokenPair, responses=errors(400, 401, 403, 429))
async def token_form(
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    origin: OriginDep,
    scope: Annotated[str, Form(max_length=200)] = "",
) -> TokenPair:
    """OAuth2 password form (for the Swagger UI's Authorize button).

    ``username`` is the email; put ``tenant:<slug>`` in ``scope`` to pick a tenant. A
    malformed multipart form is a 400.
    """
    tenant = next(
        (s.removeprefix("tenant:") for s in scope.split() if s.startswith("tenant:")), None
    )
    try:
        login_body = LoginRequest(email=username, password=password, tenant=tenant)
    except ValueError as error:
        raise ValidationFailed("Invalid login form", details=[str(error)]) from error
    return await service.login(
        session,
        redis,
        settings,
        email=login_body.email,
        password=login_body.password,
        tenant_slug=login_body.tenant,
        origin=origin,
    )


@router.post("/refresh", response_model=TokenPair, responses=errors(401, 403))
async def refresh(
    body: RefreshRequest, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> TokenPair:
    """Rotate a refresh token. Presenting a used one revokes the whole session family."""
    return await service.refresh(session, settings, raw_token=body.refresh_token, origin=origin)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses={**AUTHENTICATED, **errors(400)}
)
async def logout(
    session: SessionDep,
    redis: RedisDep,
    body: LogoutRequest | None = None,
    principal: Principal = Authorized(Permission.profile_read),
) -> None:
    """End this session (with ``refresh_token``) or all of the caller's sessions here."""
    await service.logout(
        session, redis, principal, raw_refresh_token=body.refresh_token if body else None
    )

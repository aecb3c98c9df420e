"""Sign-up, login, refresh-token rotation, logout and bearer authentication.

Refresh tokens rotate on every use. Each login starts a *family*; presenting a token that
was already used means it was copied, so the whole family is revoked (reuse detection)
and the event is audited - both kept even though the request answers 401.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts import service as accounts_service
from backend.audit import service as audit
from backend.auth.schemas import TokenPair
from backend.auth.throttle import LoginThrottle
from backend.core.db import after_commit, scope_to_tenant, scope_to_user
from backend.core.errors import (
    AuthenticationRequired,
    BadRequest,
    Conflict,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    ServiceUnavailable,
    TenantSuspended,
)
from backend.core.models import is_expired, utcnow
from backend.core.permissions import Role
from backend.core.principal import Actor, Principal, RequestOrigin
from backend.core.security import (
    API_TOKEN_PREFIX,
    REFRESH_TOKEN_PREFIX,
    check_password_policy,
    hash_password,
    hash_secret,
    issue_access_token,
    make_tenant_token,
    parse_tenant_token,
    verify_access_token,
    verify_password,
)
from backend.core.settings import Settings
from backend.plans import service as plans_service
from backend.tenants.models import Membership, Tenant, TenantStatus
from backend.tenants.repository import MembershipRepository, TenantDirectory, memberships_of_user
from backend.tokens.repository import ApiTokenRepository
from backend.users.models import RefreshToken, User
from backend.users.repository import RefreshTokenRepository, UserRepository
from kernel.wire import keys

log = structlog.get_logger(__name__)

# Refresh "last used" at most this often, so busy CI tokens do not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class SignupResult:
    tokens: TokenPair
    tenant: Tenant
    user: User


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug or "org"


async def _issue_tokens(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    access, _ = issue_access_token(settings, user_id=user_id, tenant_id=tenant_id, role=role)
    raw_refresh = make_tenant_token(REFRESH_TOKEN_PREFIX, tenant_id)
    await RefreshTokenRepository(session, tenant_id).add(
        RefreshToken(
            tenant_id=tenant_id,
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=hash_secret(raw_refresh),
            expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    return TokenPair(
        access_token=access,
        refresh_token=raw_refresh,
        expires_in=settings.access_token_ttl_seconds,
    )


async def signup(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    tenant_name: str,
    origin: RequestOrigin,
    redis: Redis | None = None,
) -> SignupResult:
    """Create a tenant with the caller as its owner (and the user, if new).

    For an existing account the password is checked, which is a login attempt: with
    ``redis`` it counts against the same failed-login throttle as :func:`login`.
    """
    email = email.strip().lower()
    users = UserRepository(session)
    user = await users.get_by_email(email)
    if user is None:
        check_password_policy(settings, password)
        password_hash = await hash_password(settings, password)
        user = await users.add(User(email=email, password_hash=password_hash))
    else:
        throttle = LoginThrottle(redis, settings) if redis is not None else None
        if throttle is not None:
            await throttle.check(email, origin.ip)
        if not await verify_password(settings, password, user.password_hash):
            if throttle is not None:
                await throttle.record_failure(email, origin.ip)
            raise Conflict("An account with this email already exists; log in to create a tenant")
        if throttle is not None:
            await throttle.clear_account(email)

    directory = TenantDirectory(session)
    slug = slugify(tenant_name)
    if await directory.get_by_slug(slug) is not None:
        slug = f"{slug[:44]}-{secrets.token_hex(3)}"
    tenant = await directory.add(Tenant(slug=slug, name=tenant_name))

    await scope_to_tenant(session, tenant.id)
    await MembershipRepository(session, tenant.id).add(
        Membership(tenant_id=tenant.id, user_id=user.id, role=Role.owner)
    )
    actor = Actor(type="user", id=str(user.id), label=user.email)
    await audit.record(
        session,
        tenant_id=tenant.id,
        actor=actor,
        action="tenant.created",
        origin=origin,
        target_type="tenant",
        target_id=tenant.id,
        details={"slug": tenant.slug},
    )
    await audit.record(
        session,
        tenant_id=tenant.id,
        actor=actor,
        action="member.added",
        origin=origin,
        target_type="user",
        target_id=user.id,
        details={"role": Role.owner},
    )
    tokens = await _issue_tokens(
        session, settings, user_id=user.id, tenant_id=tenant.id, role=Role.owner
    )
    await accounts_service.send_verification(session, settings, user)
    log.info("auth.signup", tenant_id=str(tenant.id), user_id=str(user.id))
    return SignupResult(tokens=tokens, tenant=tenant, user=user)


async def login(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    *,
    email: str,
    password: str,
    tenant_slug: str | None,
    origin: RequestOrigin,
) -> TokenPair:
    """Check a password and open a session in one of the user's tenants."""
    email = email.strip().lower()
    throttle = LoginThrottle(redis, settings)
    await throttle.check(email, origin.ip)

    user = await UserRepository(session).get_by_email(email)
    memberships: list[tuple[Membership, Tenant]] = []
    if user is not None:
        await scope_to_user(session, user.id)
        memberships = await memberships_of_user(session, user.id)
    if tenant_slug is not None:
        memberships = [(m, t) for m, t in memberships if t.slug == tenant_slug]

    password_ok = await verify_password(settings, password, user.password_hash if user else None)
    if user is None or not password_ok or not memberships:
        await throttle.record_failure(email, origin.ip)
        if user is not None:
            for _, tenant in memberships:
                await scope_to_tenant(session, tenant.id)
                await audit.record(
                    session,
                    tenant_id=tenant.id,
                    origin=origin,
                    outcome="failure",
                    actor=Actor(type="user", id=str(user.id), label=user.email),
                    action="auth.login.failed",
                )
        log.info("auth.login.failed", known_user=user is not None)
        raise InvalidCredentials("Invalid email, password or tenant")

    if len(memberships) > 1:
        raise BadRequest(
            "This account belongs to several tenants; say which one",
            details={"tenants": [t.slug for _, t in memberships]},
        )
    membership, tenant = memberships[0]
    if tenant.status != TenantStatus.active:
        raise TenantSuspended("This tenant is suspended")

    await throttle.clear_account(email)
    await scope_to_tenant(session, tenant.id)
    user.last_login_at = utcnow()
    session.add(user)
    await audit.record(
        session,
        tenant_id=tenant.id,
        origin=origin,
        action="auth.login.succeeded",
        actor=Actor(type="user", id=str(user.id), label=user.email),
    )
    log.info("auth.login.succeeded", tenant_id=str(tenant.id), user_id=str(user.id))
    return await _issue_tokens(
        session, settings, user_id=user.id, tenant_id=tenant.id, role=membership.role
    )


async def refresh(
    session: AsyncSession, settings: Settings, *, raw_token: str, origin: RequestOrigin
) -> TokenPair:
    """Exchange a refresh token for a new pair; a second use revokes its whole family."""
    tenant_id, token_hash = parse_tenant_token(REFRESH_TOKEN_PREFIX, raw_token)
    await scope_to_tenant(session, tenant_id)
    repo = RefreshTokenRepository(session, tenant_id)
    stored = await repo.get(token_hash=token_hash)
    if stored is None:
        raise InvalidToken("Unknown refresh token")
    if stored.revoked_at is not None and stored.used_at is None:
        raise InvalidToken("Refresh token revoked")
    if stored.used_at is not None or not await repo.claim(stored.id):
        await repo.revoke_family(stored.family_id)
        await audit.record(
            session,
            tenant_id=tenant_id,
            origin=origin,
            outcome="failure",
            actor=Actor(type="user", id=str(stored.user_id)),
            action="auth.refresh.reused",
            target_type="token_family",
            target_id=stored.family_id,
        )
        log.warning("auth.refresh.reused", tenant_id=str(tenant_id), user_id=str(stored.user_id))
        raise RefreshTokenReused("Refresh token already used; the session has been revoked")
    if is_expired(stored.expires_at):
        raise InvalidToken("Refresh token expired")

    caller = await MembershipRepository(session, tenant_id).caller(stored.user_id)
    if caller is None:
        raise InvalidToken("No longer a member of this tenant")
    membership, user, tenant = caller
    if tenant.status != TenantStatus.active:
        raise TenantSuspended("This tenant is suspended")
    await audit.record(
        session,
        tenant_id=tenant_id,
        origin=origin,
        action="auth.token.refreshed",
        actor=Actor(type="user", id=str(user.id), label=user.email),
    )
    return await _issue_tokens(
        session,
        settings,
        user_id=user.id,
        tenant_id=tenant_id,
        role=membership.role,
        family_id=stored.family_id,
    )


async def logout(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    *,
    raw_refresh_token: str | None,
) -> None:
    """End the session: deny the access token and revoke refresh tokens.

    With a refresh token, its family (this session) is revoked; without one, every refresh
    token the user holds in this tenant is.
    """
    if principal.jti is None:
        raise BadRequest("API tokens do not log out; revoke them with DELETE /api/v1/tokens/{id}")
    repo = RefreshTokenRepository(session, principal.tenant_id)
    if raw_refresh_token is not None:
        tenant_id, token_hash = parse_tenant_token(REFRESH_TOKEN_PREFIX, raw_refresh_token)
        stored = await repo.get(token_hash=token_hash) if tenant_id == principal.tenant_id else None
        if stored is None or stored.user_id != principal.user_id:
            raise InvalidToken("Unknown refresh token")
        await repo.revoke_family(stored.family_id)
    else:
        await repo.revoke_user(principal.user_id)
    await audit.record_for(session, principal, "auth.logout")
    jti, expires_at = principal.jti, principal.access_expires_at

    async def deny_access_token() -> None:
        ttl = max(int((expires_at - utcnow()).total_seconds()), 1) if expires_at else 1
        await redis.set(keys.revoked_access_token(jti), "1", ex=ttl)

    after_commit(session, deny_access_token)


async def authenticate(
    session: AsyncSession, redis: Redis, settings: Settings, *, bearer: str, origin: RequestOrigin
) -> Principal:
    """Resolve a bearer credential (JWT or API token) to a principal scoped to its tenant.

    The role comes from the membership as it is now, not as it was when the token was
    issued, so a demotion or removal takes effect on the next request.
    """
    if bearer.startswith(API_TOKEN_PREFIX + "_"):
        principal, plan, verified = await _authenticate_api_token(
            session, bearer=bearer, origin=origin
        )
    else:
        principal, plan, verified = await _authenticate_access_token(
            session, redis, settings, bearer=bearer, origin=origin
        )
    # Every authenticated request counts against the plan's API requests per minute; the
    # plan's limits travel with the principal to the services that check them.
    limits = await plans_service.cached_limits_of(session, settings, plan)
    await plans_service.count_api_request(redis, limits, tenant_id=principal.tenant_id)
    unverified = settings.email_verification_required and not verified
    return replace(principal, plan=plan, limits=limits.values, unverified_email=unverified)


async def _authenticate_access_token(
    session: AsyncSession, redis: Redis, settings: Settings, *, bearer: str, origin: RequestOrigin
) -> tuple[Principal, str, bool]:
    claims = verify_access_token(settings, bearer)
    try:
        if await redis.exists(keys.revoked_access_token(claims.jti)):
            raise InvalidToken("Access token revoked")
    except RedisError as error:
        raise ServiceUnavailable("Authentication is unavailable: Redis did not answer") from error
    await scope_to_tenant(session, claims.tenant_id)
    caller = await MembershipRepository(session, claims.tenant_id).caller_facts(claims.user_id)
    if caller is None:
        raise InvalidToken("Not a member of this tenant")
    if caller.tenant_status != TenantStatus.active:
        raise TenantSuspended("This tenant is suspended")
    principal = Principal(
        user_id=caller.user_id,
        email=caller.email,
        tenant_id=claims.tenant_id,
        role=Role(caller.role),
        is_superuser=caller.is_superuser,
        origin=origin,
        jti=claims.jti,
        access_expires_at=claims.expires_at,
    )
    return principal, caller.plan, caller.email_verified


async def _authenticate_api_token(
    session: AsyncSession, *, bearer: str, origin: RequestOrigin
) -> tuple[Principal, str, bool]:
    """Resolve a raw API token to a principal scoped to the token's tenant."""
    tenant_id, token_hash = parse_tenant_token(API_TOKEN_PREFIX, bearer)
    await scope_to_tenant(session, tenant_id)
    token = await ApiTokenRepository(session, tenant_id).get(token_hash=token_hash)
    if token is None or token.revoked_at is not None:
        raise InvalidToken("Unknown or revoked API token")
    if is_expired(token.expires_at):
        raise InvalidToken("API token expired")
    caller = await MembershipRepository(session, tenant_id).caller_facts(token.created_by)
    if caller is None:
        raise InvalidToken("The token's creator is no longer a member")
    if caller.tenant_status != TenantStatus.active:
        raise TenantSuspended("This tenant is suspended")
    creator_role, token_role = Role(caller.role), Role(token.role)
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.add(token)
    principal = Principal(
        user_id=caller.user_id,
        email=caller.email,
        tenant_id=tenant_id,
        role=token_role if creator_role.at_least(token_role) else creator_role,
        is_superuser=False,
        origin=origin,
        token_id=token.id,
    )
    return principal, caller.plan, caller.email_verified


def require_user_principal(principal: Principal) -> None:
    if principal.token_id is not None:
        raise AuthenticationRequired("This action needs a user session, not an API token")

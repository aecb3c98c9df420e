"""Email verification, password reset and invitations.

Each mailed link carries a random token; only its SHA-256 is stored (``account_tokens``).
A token works once (``used_at``, set under a row lock) and until it expires. A password
reset answers the same whether or not the email has an account (no enumeration) and ends
every session of the account. With ``BATON_EMAIL_VERIFICATION_REQUIRED`` an unverified
account may explore but not run jobs (``runs.quota``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.mail import Mail, send_after_commit
from backend.accounts.models import AccountToken, TokenPurpose
from backend.accounts.schemas import InvitationInvite, InvitationPublic
from backend.audit import service as audit
from backend.core.db import scope_to_tenant, scope_to_user
from backend.core.errors import BadRequest, Conflict, NotFound, PermissionDenied
from backend.core.models import is_expired, utcnow
from backend.core.permissions import Role
from backend.core.principal import Actor, Principal
from backend.core.security import (
    check_password_policy,
    hash_password,
    hash_secret,
    new_secret,
)
from backend.core.settings import Settings
from backend.plans.service import Limits, require
from backend.tenants.models import Membership
from backend.tenants.repository import MembershipRepository, TenantDirectory, memberships_of_user
from backend.users.models import User
from backend.users.repository import RefreshTokenRepository, UserRepository

log = structlog.get_logger(__name__)

INVALID_LINK = "This link is not valid: it was used already, has expired or never existed"
PLATFORM_ADMIN_PASSWORD = (
    "A platform administrator's password is set on the server: baton admin set-password"
)


def _link(settings: Settings, path: str, token: str) -> str:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return f"{base.rstrip('/')}{path}?token={token}"


async def _issue(
    session: AsyncSession,
    purpose: TokenPurpose,
    email: str,
    ttl: timedelta,
    **fields: object,
) -> tuple[AccountToken, str]:
    raw = new_secret()
    row = AccountToken(
        purpose=purpose,
        token_hash=hash_secret(raw),
        email=email,
        expires_at=utcnow() + ttl,
        **fields,  # type: ignore[arg-type]
    )
    session.add(row)
    await session.flush()
    return row, raw


async def _valid(session: AsyncSession, purpose: TokenPurpose, raw: str) -> AccountToken:
    """The token's row if it may still be redeemed, without redeeming it; 400 otherwise."""
    statement = select(AccountToken).where(col(AccountToken.token_hash) == hash_secret(raw))
    row = (await session.exec(statement)).first()
    if row is None or row.purpose != purpose or row.used_at is not None:
        raise BadRequest(INVALID_LINK)
    if is_expired(row.expires_at):
        raise BadRequest(INVALID_LINK)
    return row


async def _redeem(session: AsyncSession, purpose: TokenPurpose, raw: str) -> AccountToken:
    """The token's row, marked used; 400 if unknown, used, expired or for another purpose."""
    statement = (
        select(AccountToken)
        .where(col(AccountToken.token_hash) == hash_secret(raw))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = (await session.exec(statement)).first()
    if row is None or row.purpose != purpose or row.used_at is not None:
        raise BadRequest(INVALID_LINK)
    if is_expired(row.expires_at):
        raise BadRequest(INVALID_LINK)
    row.used_at = utcnow()
    session.add(row)
    await session.flush()
    return row


# ------------------------------------------------------------------------------ verification


async def send_verification(session: AsyncSession, settings: Settings, user: User) -> None:
    """Mail ``user`` a link that verifies the address (after commit)."""
    if user.email_verified_at is not None:
        return
    ttl = timedelta(seconds=settings.email_verification_ttl_seconds)
    _, raw = await _issue(session, TokenPurpose.verify_email, user.email, ttl, user_id=user.id)
    link = _link(settings, "/verify-email", raw)
    send_after_commit(
        session,
        settings,
        Mail(user.email, "Verify your email for Baton", f"Confirm your address:\n\n{link}\n"),
    )


async def resend_verification(
    session: AsyncSession, settings: Settings, principal: Principal
) -> None:
    """Mail the caller a new verification link (409 once verified)."""
    user = await UserRepository(session).get(principal.user_id)
    if user is None:
        raise NotFound("Account not found")
    if user.email_verified_at is not None:
        raise Conflict("This email is verified already")
    await send_verification(session, settings, user)


async def verify_email(session: AsyncSession, token: str) -> None:
    """Mark the account of a verification link verified."""
    row = await _redeem(session, TokenPurpose.verify_email, token)
    user = await UserRepository(session).get(row.user_id) if row.user_id else None
    if user is None or user.email != row.email:
        raise BadRequest(INVALID_LINK)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        session.add(user)
        await session.flush()
    log.info("account.email_verified", user_id=str(user.id))


# ------------------------------------------------------------------------------ reset


async def request_password_reset(session: AsyncSession, settings: Settings, email: str) -> None:
    """Mail a reset link if ``email`` has an account; the caller learns nothing either way."""
    email = email.strip().lower()
    user = await UserRepository(session).get_by_email(email)
    if user is None:
        log.info("account.reset_unknown_email")
        return
    if user.is_superuser:
        # Set on the server only (`baton admin set-password`): the database refuses the
        # API's role (migration 0020). No link is mailed; the caller learns nothing.
        log.info("account.reset_platform_admin_skipped", user_id=str(user.id))
        return
    ttl = timedelta(seconds=settings.password_reset_ttl_seconds)
    _, raw = await _issue(session, TokenPurpose.reset_password, email, ttl, user_id=user.id)
    link = _link(settings, "/reset-password", raw)
    send_after_commit(
        session,
        settings,
        Mail(email, "Reset your Baton password", f"Choose a new password:\n\n{link}\n"),
    )


async def reset_password(
    session: AsyncSession, settings: Settings, token: str, password: str
) -> None:
    """Set a new password with a reset link; every session of the account ends."""
    check_password_policy(settings, password)
    row = await _redeem(session, TokenPurpose.reset_password, token)
    user = await UserRepository(session).get(row.user_id) if row.user_id else None
    if user is None or user.email != row.email:
        raise BadRequest(INVALID_LINK)
    if user.is_superuser:  # made a platform administrator after the link was sent
        raise PermissionDenied(PLATFORM_ADMIN_PASSWORD)
    user.password_hash = await hash_password(settings, password)
    # The mailbox answered the link: the address is verified too.
    user.email_verified_at = user.email_verified_at or utcnow()
    session.add(user)
    await session.flush()
    await scope_to_user(session, user.id)
    for membership, _ in await memberships_of_user(session, user.id):
        await scope_to_tenant(session, membership.tenant_id)
        await RefreshTokenRepository(session, membership.tenant_id).revoke_user(user.id)
        await audit.record(
            session,
            tenant_id=membership.tenant_id,
            actor=_user_actor(user),
            action="account.password_reset",
            target_type="user",
            target_id=user.id,
        )
    log.info("account.password_reset", user_id=str(user.id))


def _user_actor(user: User) -> Actor:
    return Actor(type="user", id=str(user.id), label=user.email)


# ------------------------------------------------------------------------------ invitations


async def invite(
    session: AsyncSession, settings: Settings, principal: Principal, email: str, role: Role
) -> InvitationPublic:
    """Mail ``email`` an invitation to join the caller's tenant with ``role``."""
    if not principal.role.can_grant(role):
        raise PermissionDenied(f"A {principal.role} cannot grant the role {role}")
    email = email.strip().lower()
    members = MembershipRepository(session, principal.tenant_id)
    existing = await UserRepository(session).get_by_email(email)
    if existing is not None and await members.get(user_id=existing.id) is not None:
        raise Conflict("Already a member of this tenant")
    require(
        Limits.of_principal(principal),
        "members",
        usage=await members.count(),
        resets_at=None,
        tenant_id=principal.tenant_id,
    )
    ttl = timedelta(seconds=settings.invitation_ttl_seconds)
    row, raw = await _issue(
        session,
        TokenPurpose.invitation,
        email,
        ttl,
        tenant=principal.tenant_id,
        role=role,
        invited_by=principal.user_id,
    )
    tenant = await TenantDirectory(session).get(principal.tenant_id)
    name = tenant.name if tenant else "a Baton tenant"
    link = _link(settings, "/accept-invitation", raw)
    send_after_commit(
        session,
        settings,
        Mail(
            email,
            f"{principal.email} invited you to {name} on Baton",
            f"You are invited to join {name} as {role}:\n\n{link}\n",
        ),
    )
    await audit.record_for(
        session,
        principal,
        "member.invited",
        target_type="invitation",
        target_id=row.id,
        details={"email": email, "role": role},
    )
    return InvitationPublic.model_validate(row)


async def list_invitations(session: AsyncSession, principal: Principal) -> list[InvitationPublic]:
    """The tenant's invitations not yet accepted, revoked or expired, newest first."""
    statement = (
        select(AccountToken)
        .where(
            col(AccountToken.purpose) == TokenPurpose.invitation,
            col(AccountToken.tenant) == principal.tenant_id,
            col(AccountToken.used_at).is_(None),
            col(AccountToken.expires_at) > utcnow(),
        )
        .order_by(col(AccountToken.created_at).desc())
    )
    return [InvitationPublic.model_validate(r) for r in (await session.exec(statement)).all()]


async def revoke_invitation(
    session: AsyncSession, principal: Principal, invitation_id: uuid.UUID
) -> None:
    """Withdraw a pending invitation (its link stops working); another tenant's is a 404."""
    row = await session.get(AccountToken, invitation_id, with_for_update=True)
    if (
        row is None
        or row.purpose != TokenPurpose.invitation
        or row.tenant != principal.tenant_id
        or row.used_at is not None
    ):
        raise NotFound("Invitation not found")
    row.used_at = utcnow()
    session.add(row)
    await session.flush()
    await audit.record_for(
        session, principal, "member.invitation_revoked", target_type="invitation", target_id=row.id
    )


async def check_verification_link(session: AsyncSession, token: str) -> None:
    """400 unless ``token`` is a verification link that still works (not redeemed)."""
    await _valid(session, TokenPurpose.verify_email, token)


async def check_reset_link(session: AsyncSession, token: str) -> None:
    """400 unless ``token`` is a password reset link that still works (not redeemed: the
    page asking for the new password shows only for a link that can set one)."""
    await _valid(session, TokenPurpose.reset_password, token)


async def describe_invitation(session: AsyncSession, token: str) -> InvitationInvite:
    """What an invitation link offers - the tenant, the role, the address, and whether the
    address has an account already (then no password is asked) - without accepting it;
    400 for a link that no longer works."""
    row = await _valid(session, TokenPurpose.invitation, token)
    if row.tenant is None or row.role is None:
        raise BadRequest(INVALID_LINK)
    tenant = await TenantDirectory(session).get(row.tenant)
    if tenant is None:
        raise BadRequest(INVALID_LINK)
    existing = await UserRepository(session).get_by_email(row.email)
    return InvitationInvite(
        email=row.email, tenant_name=tenant.name, role=row.role, has_account=existing is not None
    )


async def accept_invitation(
    session: AsyncSession, settings: Settings, token: str, password: str | None
) -> tuple[User, Membership]:
    """Join the inviting tenant: a new account (``password`` required) or an existing one
    (its password is not asked: the link proves the mailbox). The email is verified."""
    row = await _redeem(session, TokenPurpose.invitation, token)
    if row.tenant is None or row.role is None:
        raise BadRequest(INVALID_LINK)
    users = UserRepository(session)
    user = await users.get_by_email(row.email)
    if user is None:
        if password is None:
            raise BadRequest("Choose a password for the new account")
        check_password_policy(settings, password)
        user = await users.add(
            User(
                email=row.email,
                password_hash=await hash_password(settings, password),
                email_verified_at=utcnow(),
            )
        )
    elif user.email_verified_at is None:
        user.email_verified_at = utcnow()
        session.add(user)
        await session.flush()
    await scope_to_tenant(session, row.tenant)
    members = MembershipRepository(session, row.tenant)
    if await members.get(user_id=user.id) is not None:
        raise Conflict("Already a member of this tenant")
    try:
        membership = await members.add(
            Membership(tenant_id=row.tenant, user_id=user.id, role=row.role)
        )
    except IntegrityError as error:
        raise Conflict("Already a member of this tenant") from error
    await audit.record(
        session,
        tenant_id=row.tenant,
        actor=_user_actor(user),
        action="member.added",
        target_type="user",
        target_id=user.id,
        details={"role": row.role, "email": user.email, "by": "invitation"},
    )
    return user, membership

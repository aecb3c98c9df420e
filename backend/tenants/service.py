"""Members of a tenant: list, add, change role, remove.

Rules: a role may grant only roles at or below its own, and may not change or remove a
member whose role is above its own; the last owner can be neither demoted nor removed.
Removing a member revokes their sessions and the API tokens they created.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.core.permissions import Role
from backend.core.principal import Principal
from backend.core.security import check_password_policy, hash_password
from backend.core.settings import Settings
from backend.plans.service import Limits, require
from backend.tenants.models import Membership, Tenant
from backend.tenants.repository import MembershipRepository, TenantDirectory
from backend.tenants.schemas import MemberPublic
from backend.tokens.repository import ApiTokenRepository
from backend.users.models import User
from backend.users.repository import RefreshTokenRepository, UserRepository


async def current_tenant(session: AsyncSession, principal: Principal) -> Tenant:
    tenant = await TenantDirectory(session).get(principal.tenant_id)
    if tenant is None:
        raise NotFound("Tenant not found")
    return tenant


async def list_members(session: AsyncSession, principal: Principal) -> list[MemberPublic]:
    """Every member of the principal's tenant, oldest first."""
    rows = await MembershipRepository(session, principal.tenant_id).with_users()
    return [_public(m, u) for m, u in rows]


async def add_member(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    email: str,
    role: Role,
    password: str | None,
) -> MemberPublic:
    """Give an existing account a role here, or create the account with a first password."""
    _check_can_grant(principal, role)
    users = UserRepository(session)
    user = await users.get_by_email(email)
    if user is None:
        if password is None:
            raise ValidationFailed(
                "No account has this email; give an initial password to create one",
                details=[{"loc": ["body", "password"], "msg": "required for a new account"}],
            )
        check_password_policy(settings, password)
        password_hash = await hash_password(settings, password)
        try:
            user = await users.add(User(email=email.strip().lower(), password_hash=password_hash))
        except IntegrityError as error:  # created by a concurrent request since the lookup
            raise Conflict("An account with this email was just created; try again") from error
    elif password is not None:
        raise ValidationFailed(
            "This account exists already; its password cannot be set here",
            details=[{"loc": ["body", "password"], "msg": "not allowed for an existing account"}],
        )
    members = MembershipRepository(session, principal.tenant_id)
    if await members.get(user_id=user.id) is not None:
        raise Conflict("Already a member of this tenant")
    require(
        Limits.of_principal(principal),
        "members",
        usage=await members.count(),
        resets_at=None,
        tenant_id=principal.tenant_id,
    )
    try:
        membership = await members.add(
            Membership(tenant_id=principal.tenant_id, user_id=user.id, role=role)
        )
    except IntegrityError as error:  # added by a concurrent request since the check
        raise Conflict("Already a member of this tenant") from error
    await audit.record_for(
        session,
        principal,
        "member.added",
        target_type="user",
        target_id=user.id,
        details={"role": role, "email": user.email},
    )
    return _public(membership, user)


async def change_role(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, role: Role
) -> MemberPublic:
    """Change a member's role within the caller's own authority."""
    members = MembershipRepository(session, principal.tenant_id)
    membership, user = await _existing_member(members, user_id)
    _check_can_manage(principal, Role(membership.role))
    _check_can_grant(principal, role)
    previous = Role(membership.role)
    if previous == Role.owner and role != Role.owner:
        await _keep_an_owner(members)
    membership.role = role
    session.add(membership)
    await session.flush()
    await audit.record_for(
        session,
        principal,
        "member.role_changed",
        target_type="user",
        target_id=user_id,
        details={"from": previous, "to": role},
    )
    return _public(membership, user)


async def remove_member(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> None:
    """Remove a member and revoke their sessions and the API tokens they created."""
    members = MembershipRepository(session, principal.tenant_id)
    membership, _ = await _existing_member(members, user_id)
    _check_can_manage(principal, Role(membership.role))
    if membership.role == Role.owner:
        await _keep_an_owner(members)
    await members.delete(membership)
    await RefreshTokenRepository(session, principal.tenant_id).revoke_user(user_id)
    await ApiTokenRepository(session, principal.tenant_id).revoke_created_by(user_id)
    await audit.record_for(
        session,
        principal,
        "member.removed",
        target_type="user",
        target_id=user_id,
        details={"role": membership.role},
    )


async def _existing_member(
    members: MembershipRepository, user_id: uuid.UUID
) -> tuple[Membership, User]:
    caller = await members.caller(user_id)
    if caller is None:
        raise NotFound("Member not found")
    return caller[0], caller[1]


async def _keep_an_owner(members: MembershipRepository) -> None:
    if await members.lock_and_count_role(Role.owner) <= 1:
        raise Conflict("A tenant must keep at least one owner")


def _check_can_grant(principal: Principal, role: Role) -> None:
    if not principal.role.can_grant(role):
        raise PermissionDenied(f"A {principal.role} cannot grant the role {role}")


def _check_can_manage(principal: Principal, target_role: Role) -> None:
    if not principal.role.at_least(target_role):
        raise PermissionDenied(f"A {principal.role} cannot change a member with role {target_role}")


def _public(membership: Membership, user: User) -> MemberPublic:
    return MemberPublic(
        user_id=user.id,
        email=user.email,
        role=Role(membership.role),
        created_at=membership.created_at,
    )

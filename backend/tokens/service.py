"""Tenant API tokens: create (secret shown once), list, revoke (authentication with one is
``backend.auth.service``'s).

A token's role can never exceed its creator's: it is capped when created, and again at
every use by the creator's current role, so demoting or removing the creator also
demotes or disables the tokens they made.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import NotFound, PermissionDenied
from backend.core.models import utcnow
from backend.core.permissions import Role
from backend.core.principal import Principal
from backend.core.security import (
    API_TOKEN_PREFIX,
    hash_secret,
    make_tenant_token,
)
from backend.tokens.models import ApiToken
from backend.tokens.repository import ApiTokenRepository

DISPLAY_SECRET_CHARS = 8


def display_prefix(raw: str) -> str:
    """What lists show to tell tokens apart: ``bat_`` and the secret's first characters
    (the tenant part is the same for every token of a tenant, so it would not help)."""
    return f"{API_TOKEN_PREFIX}_{raw.split('_', 2)[-1][:DISPLAY_SECRET_CHARS]}"


async def create_token(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    role: Role,
    expires_in_days: int | None,
) -> tuple[ApiToken, str]:
    """Create a token for the principal's tenant; returns the row and the raw secret."""
    if not principal.role.can_grant(role):
        raise PermissionDenied(f"A {principal.role} cannot create a token with role {role}")
    raw = make_tenant_token(API_TOKEN_PREFIX, principal.tenant_id)
    token = ApiToken(
        tenant_id=principal.tenant_id,
        name=name,
        role=role,
        prefix=display_prefix(raw),
        token_hash=hash_secret(raw),
        created_by=principal.user_id,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    await ApiTokenRepository(session, principal.tenant_id).add(token)
    await audit.record_for(
        session,
        principal,
        "token.created",
        target_type="api_token",
        target_id=token.id,
        details={"name": name, "role": role},
    )
    return token, raw


async def list_tokens(session: AsyncSession, principal: Principal) -> list[ApiToken]:
    """Every API token of the tenant, newest first (secrets are never returned)."""
    return await ApiTokenRepository(session, principal.tenant_id).list_all()


async def revoke_token(session: AsyncSession, principal: Principal, token_id: uuid.UUID) -> None:
    """Revoke a token at once; revoking a revoked token is a no-op."""
    repo = ApiTokenRepository(session, principal.tenant_id)
    token = await repo.get(id=token_id)
    if token is None:
        raise NotFound("API token not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        await audit.record_for(
            session, principal, "token.revoked", target_type="api_token", target_id=token.id
        )

"""Email verification, password reset and invitations (docs/billing.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from backend.accounts import service
from backend.accounts.schemas import (
    Accepted,
    InvitationAccept,
    InvitationCreate,
    InvitationPublic,
    PasswordResetConfirm,
    PasswordResetRequest,
    TokenBody,
)
from backend.core.db import SessionDep
from backend.core.deps import Authorized, SettingsDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT, QUOTA, errors
from backend.core.permissions import Permission
from backend.core.principal import Principal

# Redeemed by someone not logged in: the mailed token is the credential.
public_router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=errors(400))
router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=AUTHENTICATED)


@public_router.post("/verify-email", status_code=status.HTTP_204_NO_CONTENT)
async def verify_email(body: TokenBody, session: SessionDep) -> Response:
    """Verify the account's email with the mailed token (once; 400 if used or expired)."""
    await service.verify_email(session, body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public_router.post(
    "/password-reset", status_code=status.HTTP_202_ACCEPTED, response_class=Response
)
async def request_password_reset(
    body: PasswordResetRequest, session: SessionDep, settings: SettingsDep
) -> Response:
    """Mail a password reset link to the address if it has an account. The answer is the
    same either way."""
    await service.request_password_reset(session, settings, str(body.email))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@public_router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: SessionDep, settings: SettingsDep
) -> Response:
    """Set a new password with the mailed token (once, before it expires); every session
    of the account ends."""
    await service.reset_password(session, settings, body.token, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public_router.post(
    "/invitations/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=Accepted,
    responses=CONFLICT,
)
async def accept_invitation(
    body: InvitationAccept, session: SessionDep, settings: SettingsDep
) -> Accepted:
    """Join the inviting tenant with the mailed token: creates the account (with
    ``password``) if the email has none; then log in as usual."""
    user, membership = await service.accept_invitation(session, settings, body.token, body.password)
    return Accepted(user_id=user.id, tenant_id=membership.tenant_id, role=membership.role)


@router.post(
    "/me/verify-email",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=CONFLICT,
)
async def resend_verification(
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.profile_read),
) -> Response:
    """Mail the caller a new verification link (409 once verified)."""
    await service.resend_verification(session, settings, principal)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationPublic,
    responses={**CONFLICT, **QUOTA},
)
async def invite(
    body: InvitationCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> InvitationPublic:
    """Invite an email to the tenant with a role (at most the caller's); the invitee gets
    a link that expires."""
    return await service.invite(session, settings, principal, str(body.email), body.role)


@router.get("/invitations", response_model=list[InvitationPublic])
async def list_invitations(
    session: SessionDep, principal: Principal = Authorized(Permission.members_read)
) -> list[InvitationPublic]:
    """Pending invitations of the tenant, newest first."""
    return await service.list_invitations(session, principal)


@router.delete(
    "/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=BY_ID
)
async def revoke_invitation(
    invitation_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Authorized(Permission.members_manage),
) -> Response:
    """Withdraw a pending invitation; its link stops working."""
    await service.revoke_invitation(session, principal, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

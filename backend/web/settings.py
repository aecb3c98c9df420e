"""Dashboard pages: settings - the tenant's members and roles, and its API tokens.

Each action calls the service the REST API calls (``tenants.service``, ``tokens.service``),
with the permission the matching API route requires. A new API token's secret is rendered
into the answer to the form that created it and nowhere else: not stored, not put in a
redirect, a cookie or the list page.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from backend.accounts import service as accounts_service
from backend.accounts.schemas import InvitationCreate
from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import ValidationFailed
from backend.core.models import utcnow
from backend.core.permissions import Permission, Role
from backend.core.principal import Principal
from backend.tenants import service as members_service
from backend.tenants.schemas import MemberCreate, MemberUpdate
from backend.tokens import service as tokens_service
from backend.tokens.models import ApiToken
from backend.tokens.schemas import ApiTokenCreate
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, CREATED, FormState, Refused, form_page, submit
from backend.web.render import redirect
from backend.web.session import WebAuthorized, web_allows

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=1024)]
NoticeQuery = Annotated[str | None, Query(max_length=40)]

# What a redirect after an action may ask the page to say (never free text from the URL).
NOTICES = {
    "member-added": "Member added.",
    "role-changed": "Role changed.",
    "member-removed": "Member removed; their sessions and API tokens no longer work.",
    "token-revoked": "Token revoked; it stops working on its next request.",
    "invited": "Invitation sent: the link in it works once, until it expires.",
    "invitation-revoked": "Invitation withdrawn; its link no longer works.",
}


def grantable_roles(principal: Principal) -> list[Role]:
    """The roles the caller may hand out, highest first (the service checks again)."""
    return [role for role in Role if principal.role.can_grant(role)]


# ---------------------------------------------------------------------------- members


async def _members_page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    *,
    form: FormState = BLANK,
    notice: str | None = None,
) -> Response:
    members = await members_service.list_members(session, principal)
    invitations = await accounts_service.list_invitations(session, principal)
    can_manage = web_allows(principal, Permission.members_manage)
    rows = [
        {"member": m, "manageable": can_manage and principal.role.at_least(m.role)} for m in members
    ]
    return form_page(
        request,
        "settings/members.html",
        {
            "principal": principal,
            "section": "members",
            "rows": rows,
            "invitations": invitations,
            "can_manage": can_manage,
            "roles": grantable_roles(principal),
        },
        form=form,
        notice=NOTICES.get(notice or ""),
    )


@router.get("/settings/members")
async def members(
    request: Request,
    session: SessionDep,
    notice: NoticeQuery = None,
    principal: Principal = WebAuthorized(Permission.members_read),
) -> Response:
    """The tenant's members and their roles; admins and owners may manage them here."""
    return await _members_page(request, session, principal, notice=notice)


@router.post("/settings/members")
async def add_member(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: FormText = "",
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Add a member (as ``POST /api/v1/members``): an existing account, or a new one with
    the initial password given."""
    values = {"email": email, "role": role}

    async def add() -> None:
        body = MemberCreate.model_validate(
            {"email": email, "role": role, "password": password or None}
        )
        await members_service.add_member(
            session, settings, principal, email=body.email, role=body.role, password=body.password
        )

    outcome = await submit(session, add, values, service_fields=True)
    if isinstance(outcome, Refused):
        return await _members_page(request, session, principal, form=outcome)
    return redirect(request, "/settings/members?notice=member-added")


@router.post("/settings/invitations")
async def invite_member(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText = "",
    role: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Invite an address by email (as ``POST /api/v1/invitations``): a role up to the
    caller's, within the plan's members limit."""
    values = {"form": "invite", "email": email, "role": role}

    async def invite() -> None:
        body = InvitationCreate.model_validate({"email": email, "role": role})
        await accounts_service.invite(session, settings, principal, str(body.email), body.role)

    outcome = await submit(session, invite, values, service_fields=True)
    if isinstance(outcome, Refused):
        return await _members_page(request, session, principal, form=outcome)
    return redirect(request, "/settings/members?notice=invited")


@router.post("/settings/invitations/{invitation_id}/revoke")
async def revoke_invitation(
    request: Request,
    invitation_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Withdraw a pending invitation (as ``DELETE /api/v1/invitations/{id}``)."""
    await accounts_service.revoke_invitation(session, principal, invitation_id)
    return redirect(request, "/settings/members?notice=invitation-revoked")


@router.post("/settings/members/{user_id}/role")
async def change_member_role(
    request: Request,
    user_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    role: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Change a member's role (as ``PATCH /api/v1/members/{id}``)."""
    try:
        body = MemberUpdate.model_validate({"role": role})
    except ValidationError as error:
        raise ValidationFailed(f"Not a role: {role!r}") from error
    await members_service.change_role(session, principal, user_id, body.role)
    return redirect(request, "/settings/members?notice=role-changed")


@router.post("/settings/members/{user_id}/remove")
async def remove_member(
    request: Request,
    user_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Remove a member (as ``DELETE /api/v1/members/{id}``); their sessions and tokens end."""
    await members_service.remove_member(session, principal, user_id)
    return redirect(request, "/settings/members?notice=member-removed")


# ----------------------------------------------------------------------------- tokens


async def _tokens_page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    *,
    form: FormState = BLANK,
    notice: str | None = None,
    created: dict[str, Any] | None = None,
) -> Response:
    tokens = await tokens_service.list_tokens(session, principal)
    emails = {m.user_id: m.email for m in await members_service.list_members(session, principal)}
    return form_page(
        request,
        "settings/tokens.html",
        {
            "principal": principal,
            "section": "tokens",
            "tokens": tokens,
            "emails": emails,
            "can_manage": web_allows(principal, Permission.tokens_manage),
            "roles": grantable_roles(principal),
            "created": created,
            "now": utcnow(),
        },
        form=form,
        notice=NOTICES.get(notice or ""),
        no_store=created is not None,  # the secret must not be cached
    )


@router.get("/settings/tokens")
async def tokens(
    request: Request,
    session: SessionDep,
    notice: NoticeQuery = None,
    principal: Principal = WebAuthorized(Permission.tokens_read),
) -> Response:
    """The tenant's API tokens (never their secrets)."""
    return await _tokens_page(request, session, principal, notice=notice)


@router.post("/settings/tokens")
async def create_token(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    name: Annotated[str, Form(max_length=1024)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    expires_in_days: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = WebAuthorized(Permission.tokens_manage),
) -> Response:
    """Create an API token (as ``POST /api/v1/tokens``) and show its secret, this once."""
    values = {"name": name, "role": role, "expires_in_days": expires_in_days}

    async def create() -> tuple[ApiToken, str]:
        body = ApiTokenCreate.model_validate(
            {"name": name, "role": role, "expires_in_days": expires_in_days.strip() or None}
        )
        return await tokens_service.create_token(
            session, principal, name=body.name, role=body.role, expires_in_days=body.expires_in_days
        )

    outcome = await submit(session, create, values)
    if isinstance(outcome, Refused):
        return await _tokens_page(request, session, principal, form=outcome)
    token, secret = outcome
    return await _tokens_page(
        request, session, principal, created={"token": token, "secret": secret}, form=CREATED
    )


@router.post("/settings/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request,
    token_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.tokens_manage),
) -> Response:
    """Revoke an API token (as ``DELETE /api/v1/tokens/{id}``)."""
    await tokens_service.revoke_token(session, principal, token_id)
    return redirect(request, "/settings/tokens?notice=token-revoked")

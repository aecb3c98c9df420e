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

from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import BatonError, ValidationFailed
from backend.core.models import utcnow
from backend.core.permissions import Permission, Role
from backend.core.principal import Principal
from backend.tenants import service as members_service
from backend.tenants.schemas import MemberCreate, MemberUpdate
from backend.tokens import service as tokens_service
from backend.tokens.schemas import ApiTokenCreate
from backend.web.csrf import CsrfChecked
from backend.web.render import form_problems, page, redirect
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
}


def service_problems(error: BatonError) -> dict[str, str]:
    """A service's ``ValidationFailed`` details (``loc: [body, field]``) as field -> message."""
    details = error.details if isinstance(error.details, list) else []
    return {
        str(d["loc"][-1]): str(d.get("msg", ""))
        for d in details
        if isinstance(d, dict) and d.get("loc")
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
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    members = await members_service.list_members(session, principal)
    can_manage = web_allows(principal, Permission.members_manage)
    rows = [
        {"member": m, "manageable": can_manage and principal.role.at_least(m.role)} for m in members
    ]
    return page(
        request,
        "settings/members.html",
        {
            "principal": principal,
            "section": "members",
            "rows": rows,
            "can_manage": can_manage,
            "roles": grantable_roles(principal),
            "values": values or {},
            "errors": errors or {},
            "message": message,
            "notice": NOTICES.get(notice or ""),
        },
        status=status,
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
    try:
        async with session.begin_nested():  # a refused addition leaves nothing behind
            body = MemberCreate.model_validate(
                {"email": email, "role": role, "password": password or None}
            )
            await members_service.add_member(
                session,
                settings,
                principal,
                email=body.email,
                role=body.role,
                password=body.password,
            )
    except ValidationError as error:
        return await _members_page(
            request, session, principal, values=values, errors=form_problems(error), status=422
        )
    except BatonError as error:
        if error.status_code >= 500:
            raise
        return await _members_page(
            request,
            session,
            principal,
            values=values,
            errors=service_problems(error),
            message=error.message,
            status=error.status_code,
        )
    return redirect(request, "/settings/members?notice=member-added")


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
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    notice: str | None = None,
    created: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    tokens = await tokens_service.list_tokens(session, principal)
    emails = {m.user_id: m.email for m in await members_service.list_members(session, principal)}
    response = page(
        request,
        "settings/tokens.html",
        {
            "principal": principal,
            "section": "tokens",
            "tokens": tokens,
            "emails": emails,
            "can_manage": web_allows(principal, Permission.tokens_manage),
            "roles": grantable_roles(principal),
            "values": values or {},
            "errors": errors or {},
            "message": message,
            "notice": NOTICES.get(notice or ""),
            "created": created,
            "now": utcnow(),
        },
        status=status,
    )
    if created is not None:
        response.headers["Cache-Control"] = "no-store"  # the secret must not be cached
    return response


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
    try:
        async with session.begin_nested():
            body = ApiTokenCreate.model_validate(
                {"name": name, "role": role, "expires_in_days": expires_in_days.strip() or None}
            )
            token, secret = await tokens_service.create_token(
                session,
                principal,
                name=body.name,
                role=body.role,
                expires_in_days=body.expires_in_days,
            )
    except ValidationError as error:
        return await _tokens_page(
            request, session, principal, values=values, errors=form_problems(error), status=422
        )
    except BatonError as error:
        if error.status_code >= 500:
            raise
        return await _tokens_page(
            request,
            session,
            principal,
            values=values,
            message=error.message,
            status=error.status_code,
        )
    return await _tokens_page(
        request, session, principal, created={"token": token, "secret": secret}, status=201
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

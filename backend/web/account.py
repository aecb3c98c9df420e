"""Public dashboard pages of the account lifecycle, the targets of the mailed links: verify
an email address, ask for and set a new password, accept an invitation.

Every rule is ``accounts.service``'s, as for the API's ``/api/v1/auth/...`` routes. Opening
a link only shows a form: the single-use token is redeemed by the form's POST (CSRF
checked), so a mail scanner that fetches the link does not use it up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from backend.accounts import service as accounts
from backend.accounts.schemas import (
    InvitationAccept,
    PasswordResetConfirm,
    PasswordResetRequest,
    TokenBody,
)
from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import BadRequest
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.web.csrf import CsrfChecked
from backend.web.forms import FormState, Refused, submit
from backend.web.render import page
from backend.web.session import MaybeWebPrincipal, WebAuthorized

router = APIRouter(include_in_schema=False)

# A token as mailed (the service says whether it works); longer input is refused.
TokenQuery = Annotated[str, Query(max_length=200)]
TokenForm = Annotated[str, Form(max_length=200)]
PasswordForm = Annotated[str, Form(max_length=1024)]


def _form(
    request: Request,
    template: str,
    context: dict[str, Any],
    form: FormState | None = None,
) -> Response:
    form = form or FormState()
    return page(
        request,
        template,
        {**context, "values": form.values, "errors": form.errors, "message": form.message},
        status=form.status,
    )


def _done(request: Request, principal: Any, title: str, text: str, *, login: bool) -> Response:
    return page(
        request,
        "public/account_done.html",
        {"principal": principal, "title": title, "text": text, "login": login},
    )


def _checked_token(token: str) -> str:
    """The token's shape (as the API's body model checks it); 400 for anything else."""
    try:
        return TokenBody(token=token).token
    except ValidationError as error:
        raise BadRequest(accounts.INVALID_LINK) from error


# ------------------------------------------------------------------------------ verification


@router.get("/verify-email")
async def verify_email_form(
    request: Request, session: SessionDep, principal: MaybeWebPrincipal, token: TokenQuery = ""
) -> Response:
    """The verification link's page: a button that verifies the address (400 for a link
    that no longer works)."""
    await accounts.check_verification_link(session, _checked_token(token))
    return _form(request, "public/verify_email.html", {"principal": principal, "token": token})


@router.post("/verify-email")
async def verify_email(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    principal: MaybeWebPrincipal,
    token: TokenForm = "",
) -> Response:
    """Verify the address (as ``POST /api/v1/auth/verify-email``; once)."""

    async def verify() -> None:
        await accounts.verify_email(session, TokenBody(token=token).token)

    outcome = await submit(session, verify, {})
    if isinstance(outcome, Refused):
        return _form(
            request, "public/verify_email.html", {"principal": principal, "token": ""}, outcome
        )
    return _done(
        request,
        principal,
        "Email verified",
        "Your address is verified: you can run jobs.",
        login=principal is None,
    )


@router.get("/verify-email/resend")
async def resend_verification_form(
    request: Request, principal: Principal = WebAuthorized(Permission.profile_read)
) -> Response:
    """Where a logged-in account asks for a new verification link."""
    return _form(request, "public/verify_email.html", {"principal": principal, "token": ""})


@router.post("/verify-email/resend")
async def resend_verification(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = WebAuthorized(Permission.profile_read),
) -> Response:
    """Mail the caller a new verification link (as ``POST /api/v1/me/verify-email``; 409
    once verified)."""
    await accounts.resend_verification(session, settings, principal)
    return _done(
        request,
        principal,
        "Check your mail",
        f"A new link is on its way to {principal.email}.",
        login=False,
    )


# ------------------------------------------------------------------------------ password reset


@router.get("/forgot-password")
async def forgot_password_form(request: Request, principal: MaybeWebPrincipal) -> Response:
    """Ask for a password reset link."""
    return _form(request, "public/forgot_password.html", {"principal": principal})


@router.post("/forgot-password")
async def forgot_password(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: MaybeWebPrincipal,
    email: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Mail a reset link if the address has an account (as ``POST
    /api/v1/auth/password-reset``): the page says the same either way."""

    async def ask() -> None:
        body = PasswordResetRequest(email=email)
        await accounts.request_password_reset(session, settings, str(body.email))

    outcome = await submit(session, ask, {"email": email})
    if isinstance(outcome, Refused):
        return _form(request, "public/forgot_password.html", {"principal": principal}, outcome)
    return _done(
        request,
        principal,
        "Check your mail",
        "If an account uses this address, a link to choose a new password is on its way."
        " It works once, for a limited time.",
        login=False,
    )


@router.get("/reset-password")
async def reset_password_form(
    request: Request, session: SessionDep, principal: MaybeWebPrincipal, token: TokenQuery = ""
) -> Response:
    """The reset link's page: the new password's form (400 for a link that no longer
    works)."""
    await accounts.check_reset_link(session, _checked_token(token))
    return _form(request, "public/reset_password.html", {"principal": principal, "token": token})


@router.post("/reset-password")
async def reset_password(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: MaybeWebPrincipal,
    token: TokenForm = "",
    password: PasswordForm = "",
) -> Response:
    """Set the new password (as ``POST /api/v1/auth/password-reset/confirm``): every
    session of the account ends."""

    async def reset() -> None:
        body = PasswordResetConfirm(token=token, password=password)
        await accounts.reset_password(session, settings, body.token, body.password)

    outcome = await submit(session, reset, {}, service_fields=True)
    if isinstance(outcome, Refused):
        context = {"principal": principal, "token": token}
        return _form(request, "public/reset_password.html", context, outcome)
    return _done(
        request,
        None,
        "Password changed",
        "Your new password is set and every session of the account has ended: log in again.",
        login=True,
    )


# ------------------------------------------------------------------------------ invitations


@router.get("/accept-invitation")
async def accept_invitation_form(
    request: Request, session: SessionDep, principal: MaybeWebPrincipal, token: TokenQuery = ""
) -> Response:
    """The invitation link's page: the tenant and role offered; a password to choose when
    the address has no account yet (400 for a link that no longer works)."""
    invite = await accounts.describe_invitation(session, _checked_token(token))
    return _form(
        request,
        "public/accept_invitation.html",
        {"principal": principal, "token": token, "invite": invite},
    )


@router.post("/accept-invitation")
async def accept_invitation(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: MaybeWebPrincipal,
    token: TokenForm = "",
    password: PasswordForm = "",
) -> Response:
    """Join the inviting tenant (as ``POST /api/v1/auth/invitations/accept``): a new
    account with the password chosen, or the existing account of the invited address."""

    async def accept() -> str:
        body = InvitationAccept(token=token, password=password or None)
        invite = await accounts.describe_invitation(session, body.token)
        await accounts.accept_invitation(session, settings, body.token, body.password)
        return invite.tenant_name

    outcome = await submit(session, accept, {}, service_fields=True)
    if isinstance(outcome, Refused):
        try:
            invite = await accounts.describe_invitation(session, _checked_token(token))
        except BadRequest:
            invite = None
        context = {"principal": principal, "token": token, "invite": invite}
        return _form(request, "public/accept_invitation.html", context, outcome)
    return _done(
        request,
        principal,
        "Welcome aboard",
        f"You joined {outcome}. Log in with the invited address to start.",
        login=True,
    )

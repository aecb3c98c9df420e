"""Dashboard page: settings - the tenant's secrets (names and metadata; values write-only).

Each action calls ``secrets.service`` with the permission of the matching API route. A
value typed into a form is encrypted at once and never rendered back: not into the page,
not into a re-displayed form after an error, not into a redirect.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response
from pydantic import ValidationError

from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import ValidationFailed
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.secrets import service
from backend.secrets.schemas import MAX_VALUE_CHARS, SecretCreate, SecretUpdate
from backend.tenants import service as members_service
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, FormState, Refused, form_page, submit
from backend.web.render import redirect
from backend.web.session import WebAuthorized, web_allows

router = APIRouter(include_in_schema=False)

PAGE = "/settings/secrets"
# One character more than a value may have, so an over-long value is a form error, not a 422.
ValueField = Annotated[str, Form(max_length=MAX_VALUE_CHARS + 1)]
TextField = Annotated[str, Form(max_length=1024)]
SecretName = Annotated[str, Path(max_length=64)]
NOTICES = {
    "secret-created": "Secret created.",
    "secret-updated": "Secret updated.",
    "secret-deleted": "Secret deleted; tasks that still use it will fail until it exists again.",
}


async def _secrets_page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    *,
    form: FormState = BLANK,
    notice: str | None = None,
) -> Response:
    secrets = await service.list_secrets(session, principal)
    emails = {m.user_id: m.email for m in await members_service.list_members(session, principal)}
    return form_page(
        request,
        "settings/secrets.html",
        {
            "principal": principal,
            "section": "secrets",
            "secrets": secrets,
            "emails": emails,
            "can_manage": web_allows(principal, Permission.secrets_write),
        },
        form=form,
        notice=NOTICES.get(notice or ""),
    )


@router.get(PAGE)
async def secrets(
    request: Request,
    session: SessionDep,
    notice: Annotated[str | None, Query(max_length=40)] = None,
    principal: Principal = WebAuthorized(Permission.secrets_read),
) -> Response:
    """The tenant's secrets (never their values); editors and above manage them here."""
    return await _secrets_page(request, session, principal, notice=notice)


@router.post(PAGE)
async def create_secret(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    name: TextField = "",
    value: ValueField = "",
    description: TextField = "",
    principal: Principal = WebAuthorized(Permission.secrets_write),
) -> Response:
    """Create a secret (as ``POST /api/v1/secrets``)."""
    values = {"name": name, "description": description}  # never the value

    async def create() -> None:
        body = SecretCreate.model_validate(
            {"name": name.strip(), "value": value, "description": description.strip()}
        )
        await service.create_secret(
            session,
            settings,
            principal,
            name=body.name,
            value=body.value,
            description=body.description,
        )

    outcome = await submit(session, create, values)
    if isinstance(outcome, Refused):
        return await _secrets_page(request, session, principal, form=outcome)
    return redirect(request, f"{PAGE}?notice=secret-created")


@router.post(PAGE + "/{secret_name}")
async def update_secret(
    request: Request,
    secret_name: SecretName,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    value: ValueField = "",
    description: Annotated[str | None, Form(max_length=1024)] = None,
    principal: Principal = WebAuthorized(Permission.secrets_write),
) -> Response:
    """Set a secret's value and/or description (as ``PATCH /api/v1/secrets/{name}``); an
    empty value field keeps the value."""
    try:
        body = SecretUpdate.model_validate(
            {"value": value or None, "description": description.strip() if description else None}
        )
    except ValidationError as error:
        raise ValidationFailed("Give a new value (at most 32768 characters)") from error
    await service.update_secret(
        session, settings, principal, secret_name, value=body.value, description=body.description
    )
    return redirect(request, f"{PAGE}?notice=secret-updated")


@router.post(PAGE + "/{secret_name}/delete")
async def delete_secret(
    request: Request,
    secret_name: SecretName,
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.secrets_write),
) -> Response:
    """Delete a secret (as ``DELETE /api/v1/secrets/{name}``)."""
    await service.delete_secret(session, principal, secret_name)
    return redirect(request, f"{PAGE}?notice=secret-deleted")

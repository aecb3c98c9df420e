"""Dashboard page: tenant-hosted workers - credentials (secret shown once), and the
tenant's connected workers.

Each action calls ``workers.service`` with the permission the matching API route needs.
A new credential is rendered into the answer to the form that created it and nowhere else.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from backend.core.db import SessionDep
from backend.core.deps import RedisDep, SettingsDep
from backend.core.models import utcnow
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, CREATED, FormState, Refused, form_page, submit
from backend.web.render import redirect
from backend.web.session import WebAuthorized, web_allows
from backend.workers import service
from backend.workers.models import WorkerCredential
from backend.workers.schemas import WorkerCredentialCreate

router = APIRouter(include_in_schema=False)

NOTICES = {
    "credential-revoked": "Credential revoked; its workers were disconnected.",
}


async def _workers_page(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal,
    *,
    form: FormState = BLANK,
    notice: str | None = None,
    created: dict[str, Any] | None = None,
) -> Response:
    return form_page(
        request,
        "settings/workers.html",
        {
            "principal": principal,
            "section": "workers",
            "credentials": await service.list_credentials(session, principal),
            "workers": await service.connected_workers(redis, principal),
            "can_manage": web_allows(principal, Permission.workers_manage),
            "created": created,
            "now": utcnow(),
        },
        form=form,
        notice=NOTICES.get(notice or ""),
        no_store=created is not None,  # the secret must not be cached
    )


@router.get("/settings/workers")
async def workers(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    notice: Annotated[str | None, Query(max_length=40)] = None,
    principal: Principal = WebAuthorized(Permission.workers_read),
) -> Response:
    """Worker credentials (never their secrets) and the tenant's connected workers."""
    return await _workers_page(request, session, redis, principal, notice=notice)


@router.post("/settings/workers/credentials")
async def create_credential(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=1024)] = "",
    queue: Annotated[str, Form(max_length=1024)] = "",
    expires_in_days: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = WebAuthorized(Permission.workers_manage),
) -> Response:
    """Create a worker credential (as ``POST /api/v1/workers/credentials``), shown once."""
    values = {"name": name, "queue": queue, "expires_in_days": expires_in_days}

    async def create() -> tuple[WorkerCredential, str]:
        body = WorkerCredentialCreate.model_validate(
            {"name": name, "queue": queue, "expires_in_days": expires_in_days.strip() or None}
        )
        return await service.create_credential(
            session,
            redis,
            settings,
            principal,
            name=body.name,
            queue=body.queue,
            expires_in_days=body.expires_in_days,
        )

    outcome = await submit(session, create, values)
    if isinstance(outcome, Refused):
        return await _workers_page(request, session, redis, principal, form=outcome)
    row, secret = outcome
    return await _workers_page(
        request,
        session,
        redis,
        principal,
        created={"credential": row, "secret": secret},
        form=CREATED,
    )


@router.post("/settings/workers/credentials/{credential_id}/revoke")
async def revoke_credential(
    request: Request,
    credential_id: uuid.UUID,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.workers_manage),
) -> Response:
    """Revoke a credential (as ``DELETE /api/v1/workers/credentials/{id}``)."""
    await service.revoke_credential(session, redis, principal, credential_id)
    return redirect(request, "/settings/workers?notice=credential-revoked")

"""Job templates: the built-in gallery and the tenant's own; instantiate into a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from backend.core.db import SessionDep
from backend.core.deps import Authorized, RedisDep
from backend.core.openapi import AUTHENTICATED, BY_ID, CONFLICT
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.templates import service
from backend.templates.schemas import (
    NAME_PATTERN,
    Instantiate,
    Instantiated,
    TemplateFromJob,
    TemplatePublic,
)

router = APIRouter(prefix="/api/v1/templates", tags=["templates"], responses=AUTHENTICATED)
TemplateName = Annotated[str, Path(max_length=100, pattern=NAME_PATTERN)]


@router.get("", response_model=list[TemplatePublic])
async def list_templates(
    session: SessionDep, principal: Principal = Authorized(Permission.jobs_read)
) -> list[TemplatePublic]:
    """The built-in gallery, then the tenant's own templates."""
    return await service.list_templates(session, principal)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplatePublic,
    responses={**BY_ID, **CONFLICT},
)
async def save_template(
    body: TemplateFromJob,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> TemplatePublic:
    """Save one of the tenant's jobs as a template; the job's params become its
    parameters (with their values as defaults). 409 if the name is taken."""
    return await service.save_from_job(session, principal, body)


@router.get("/{template_name}", response_model=TemplatePublic, responses=BY_ID)
async def get_template(
    template_name: TemplateName,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_read),
) -> TemplatePublic:
    """One template with its parameter schema and spec."""
    return await service.get_template(session, principal, template_name)


@router.delete(
    "/{template_name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**BY_ID, **CONFLICT},
)
async def delete_template(
    template_name: TemplateName,
    session: SessionDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> None:
    """Delete one of the tenant's templates (a built-in one is a 409)."""
    await service.delete_template(session, principal, template_name)


@router.post(
    "/{template_name}/instantiate",
    status_code=status.HTTP_201_CREATED,
    response_model=Instantiated,
    responses={
        200: {"model": Instantiated, "description": "dry_run: the spec, no job"},
        **BY_ID,
        **CONFLICT,
    },
)
async def instantiate(
    template_name: TemplateName,
    body: Instantiate,
    response: Response,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = Authorized(Permission.jobs_write),
) -> Instantiated:
    """Create a job from a template with these parameter values (defaults fill the rest);
    ``dry_run`` answers the validated spec and creates nothing."""
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
    return await service.instantiate(
        session, redis, principal, template_name, body.job_name, body.params, dry_run=body.dry_run
    )

"""Templates: the built-in gallery plus the tenant's own (saved from its jobs); turning a
template into a job (parameters checked against its schema, the spec validated as any
job spec, then created through the jobs service).

A tenant template's name may not shadow a built-in one, so a name always means one
template. Saving and deleting write an audit event in the same transaction.
"""

from __future__ import annotations

import copy
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import Conflict, NotFound
from backend.core.models import utcnow
from backend.core.principal import Principal
from backend.jobs import service as jobs
from backend.jobs.spec import stored_form, validate_job_spec
from backend.templates.builtin import BUILTIN
from backend.templates.models import JobTemplate
from backend.templates.render import render
from backend.templates.repository import UNIQUE_NAME_INDEX, TemplateRepository
from backend.templates.schemas import Instantiated, TemplateFromJob, TemplatePublic

_BUILTIN = {template["name"]: template for template in BUILTIN}
_JSON_TYPE = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _builtin(template: dict[str, Any]) -> TemplatePublic:
    return TemplatePublic(source="builtin", **copy.deepcopy(template))


def _tenant(template: JobTemplate) -> TemplatePublic:
    return TemplatePublic(
        name=template.name,
        title=template.title,
        description=template.description,
        source="tenant",
        parameters=template.parameters,
        spec=template.spec,
    )


async def list_templates(session: AsyncSession, principal: Principal) -> list[TemplatePublic]:
    """The gallery, then the tenant's own templates by name."""
    own = await TemplateRepository(session, principal.tenant_id).all()
    return [_builtin(t) for t in BUILTIN] + [_tenant(t) for t in own]


async def get_template(session: AsyncSession, principal: Principal, name: str) -> TemplatePublic:
    """A built-in or the tenant's template by name; 404 otherwise."""
    if name in _BUILTIN:
        return _builtin(_BUILTIN[name])
    found = await TemplateRepository(session, principal.tenant_id).get(name=name)
    if found is None:
        raise NotFound("Template not found")
    return _tenant(found)


def _parameters_of(params: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema for a job's params: each one optional, its value the default."""
    properties: dict[str, Any] = {}
    for key, value in params.items():
        schema: dict[str, Any] = {"default": value}
        if type(value) in _JSON_TYPE:
            schema["type"] = _JSON_TYPE[type(value)]
        properties[key] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": [],
        "additionalProperties": False,
    }


async def save_from_job(
    session: AsyncSession, principal: Principal, body: TemplateFromJob
) -> TemplatePublic:
    """Save a job's current spec as the tenant's template ``body.name``."""
    if body.name in _BUILTIN:
        raise Conflict(f"{body.name!r} is a built-in template")
    job = await jobs.get_job(session, principal, body.job_id)
    spec = {key: value for key, value in job.spec.items() if key != "name"}
    template = JobTemplate(
        tenant_id=principal.tenant_id,
        name=body.name,
        title=body.title or job.name,
        description=body.description or job.description,
        parameters=_parameters_of(job.spec.get("params", {})),
        spec=spec,
        created_by=principal.user_id,
        created_at=utcnow(),
    )
    session.add(template)
    try:
        await session.flush()
    except IntegrityError as error:
        if UNIQUE_NAME_INDEX in str(error.orig):
            raise Conflict(f"A template named {body.name!r} exists already") from error
        raise
    await audit.record_for(
        session,
        principal,
        "template.created",
        target_type="template",
        target_id=template.id,
        details={"name": body.name, "job_id": str(job.id)},
    )
    return _tenant(template)


async def delete_template(session: AsyncSession, principal: Principal, name: str) -> None:
    """Delete one of the tenant's templates (built-ins cannot be: 409)."""
    if name in _BUILTIN:
        raise Conflict(f"{name!r} is a built-in template")
    found = await TemplateRepository(session, principal.tenant_id).get(name=name)
    if found is None:
        raise NotFound("Template not found")
    await session.delete(found)
    await session.flush()
    await audit.record_for(
        session,
        principal,
        "template.deleted",
        target_type="template",
        target_id=found.id,
        details={"name": name},
    )


async def instantiate(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    name: str,
    job_name: str,
    values: dict[str, Any],
    *,
    dry_run: bool = False,
) -> Instantiated:
    """A job from a template: 422 on bad parameters or a spec that does not validate,
    409 when the job name is taken; ``dry_run`` only renders and validates."""
    template = await get_template(session, principal, name)
    spec = validate_job_spec(render(template.spec, template.parameters, job_name, values))
    if dry_run:
        return Instantiated(spec=stored_form(spec), job=None)
    job = await jobs.create_job(session, redis, principal, spec)
    return Instantiated(spec=job.spec, job=job)

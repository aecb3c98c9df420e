"""Dashboard pages: the template gallery.

The gallery lists the built-in and the tenant's templates; a template's page is a form
generated from its parameter schema (text, number, checkbox, choice, one item per line for
lists) that creates the job through the same service as ``POST
/api/v1/templates/{name}/instantiate``, with the same permission.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from backend.core.db import SessionDep
from backend.core.deps import RedisDep
from backend.core.errors import Conflict, ValidationFailed
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.templates import service
from backend.templates.schemas import TemplatePublic
from backend.web.csrf import CsrfChecked
from backend.web.render import page, redirect
from backend.web.session import WebAuthorized

router = APIRouter(prefix="/templates", include_in_schema=False)
FIELD_PREFIX = "param."


def _fields(template: TemplatePublic, values: dict[str, str]) -> list[dict[str, Any]]:
    """One form field per parameter, in the schema's order."""
    required = set(template.parameters.get("required", []))
    fields = []
    for name, schema in template.parameters.get("properties", {}).items():
        default = schema.get("default")
        kind = schema.get("type", "string")
        if "enum" in schema:
            widget = "select"
        elif kind == "boolean":
            widget = "checkbox"
        elif kind == "array":
            widget = "lines"
            default = "\n".join(str(item) for item in default or [])
        elif kind in ("integer", "number"):
            widget = "number"
        else:
            widget = "text"
        fields.append(
            {
                "name": name,
                "input": FIELD_PREFIX + name,
                "widget": widget,
                "label": schema.get("title") or name.replace("_", " "),
                "help": schema.get("description", ""),
                "required": name in required,
                "choices": schema.get("enum", []),
                "value": values.get(name, "" if default is None else default),
            }
        )
    return fields


def _convert(raw: str, schema: dict[str, Any]) -> Any:
    """A typed value from a form field; left a string when it does not convert, so the
    parameter check names the problem."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    if kind == "array":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    return raw


def _values(template: TemplatePublic, form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameter values submitted (empty fields take the default) and the raw text."""
    values: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for name, schema in template.parameters.get("properties", {}).items():
        text = str(form.get(FIELD_PREFIX + name, ""))
        raw[name] = text
        if schema.get("type") == "boolean":
            values[name] = FIELD_PREFIX + name in form
        elif text.strip():
            values[name] = _convert(text.strip(), schema)
    return values, raw


def _form(
    request: Request,
    principal: Principal,
    template: TemplatePublic,
    *,
    job_name: str = "",
    raw: dict[str, str] | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "templates/form.html",
        {
            "principal": principal,
            "section": "templates",
            "template": template,
            "fields": _fields(template, raw or {}),
            "job_name": job_name,
            "problems": problems or [],
        },
        status=status,
    )


@router.get("")
async def gallery(
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_read),
) -> Response:
    """Every template: the built-in gallery, then the tenant's own."""
    templates = await service.list_templates(session, principal)
    return page(
        request,
        "templates/index.html",
        {"principal": principal, "section": "templates", "templates": templates},
    )


@router.get("/{name}")
async def template_form(
    request: Request,
    name: str,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_read),
) -> Response:
    """A template's form, generated from its parameter schema."""
    return _form(request, principal, await service.get_template(session, principal, name))


@router.post("/{name}")
async def use_template(
    request: Request,
    name: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Create the job; problems shown on the form (422, 409 on a name in use)."""
    template = await service.get_template(session, principal, name)
    form = await request.form()
    job_name = str(form.get("job_name", "")).strip()
    values, raw = _values(template, form)
    try:
        async with session.begin_nested():
            result = await service.instantiate(session, redis, principal, name, job_name, values)
    except (ValidationFailed, Conflict) as error:
        details = error.details if isinstance(error.details, list) else []
        problems = [
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
            for d in details
            if isinstance(d, dict)
        ] or [error.message]
        return _form(
            request,
            principal,
            template,
            job_name=job_name,
            raw=raw,
            problems=problems,
            status=error.status_code,
        )
    assert result.job is not None
    return redirect(request, f"/jobs/{result.job.id}")

"""Dashboard pages: jobs.

The list (last run, next fire time), create and edit a job in YAML, the job page (its DAG,
schedule with the next fire times and the tick ledger, versions, recent runs, inbound
webhooks and their deliveries), trigger a run with params, pause and resume the schedule,
create and revoke an inbound webhook (its URL shown once, in the answer that created it),
delete the job.

Every action calls the service its REST route calls, with the same permission. A spec
typed into the form is parsed exactly like a YAML request body to ``POST /api/v1/jobs``;
its problems are shown at their lines of the text (``backend.jobs.spec_text``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import SessionDep
from backend.core.deps import RedisDep, SettingsDep
from backend.core.errors import BatonError, Conflict, NotFound, ValidationFailed
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.jobs import service as jobs_service
from backend.jobs.schemas import JobPublic
from backend.jobs.spec import JobSpec, decode_document, parse_job_spec
from backend.jobs.spec_text import (
    LocatedProblem,
    format_path,
    locate_problems,
    plain_yaml,
    spec_yaml,
)
from backend.runs import latest as latest_runs
from backend.runs import service as runs_service
from backend.runs.schemas import RunTrigger
from backend.schedules import service as schedules_service
from backend.schedules.models import Schedule, ScheduleTick
from backend.secrets import service as secrets_service
from backend.secrets.references import mask_literal_credentials
from backend.triggers import service as triggers_service
from backend.triggers.models import WebhookEndpoint
from backend.triggers.schemas import WebhookCreate
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, CREATED, FormState, Refused, submit
from backend.web.graph_svg import dag_svg
from backend.web.render import page, redirect
from backend.web.session import WebAuthorized, web_allows
from kernel.cron import Tick

router = APIRouter(prefix="/jobs", include_in_schema=False)

PAGE_SIZE = 50
RECENT_RUNS = 10
RECENT_DELIVERIES = 20
VERSIONS_SHOWN = 20
PREVIEW_COUNT = 10
TICKS_SHOWN = 10
LISTING_CONTEXT = 2  # lines shown around each line with a problem
MAX_VERSION = 2**31 - 1
YAML = "application/yaml"
YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

NEW_JOB_TEXT = """\
name: my-job
description: What this job does
# schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
tasks:
  - name: hello
    type: shell
    command: echo hello
  - name: done
    type: shell
    command: echo done
    depends_on: [hello]
"""

SpecText = Annotated[str, Form()]
Cursor = Annotated[str | None, Query(max_length=100)]
FormText = Annotated[str, Form(max_length=1024)]
# What a redirect to the job page may ask it to say (never free text from the URL).
NOTICES = {"webhook-revoked": "Webhook revoked: its URL answers 404 from now on."}


def _job_id(raw: str) -> uuid.UUID:
    """A job id from the path; anything that is not a UUID is no job (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise NotFound("Job not found") from error


# ------------------------------------------------------------------------- spec problems


@dataclass(frozen=True)
class ListingLine:
    """One line of the submitted text shown under the form; ``number`` None is a gap."""

    number: int | None
    text: str = ""
    problems: tuple[LocatedProblem, ...] = ()


def _listing(text: str, problems: list[LocatedProblem]) -> list[ListingLine]:
    """The lines with problems, each with a little context, and gaps between them.

    Lines are counted as YAML counts them (a browser submits CRLF); the line after a
    final line break is a line too - an error at the end of the text points there.
    """
    lines = YAML_LINE_BREAK.split(text)
    by_line: dict[int, list[LocatedProblem]] = {}
    for problem in problems:
        if problem.line is not None:
            by_line.setdefault(min(problem.line, len(lines)), []).append(problem)
    shown = sorted(
        {
            number
            for line in by_line
            for number in range(line - LISTING_CONTEXT, line + LISTING_CONTEXT + 1)
            if 1 <= number <= len(lines)
        }
    )
    listing: list[ListingLine] = []
    for number in shown:
        if listing and listing[-1].number != number - 1:
            listing.append(ListingLine(None))
        listing.append(ListingLine(number, lines[number - 1], tuple(by_line.get(number, ()))))
    return listing


def _spec_form(
    request: Request,
    principal: Principal,
    text: str,
    *,
    job: JobPublic | None = None,
    error: BatonError | None = None,
) -> Response:
    """The create/edit form; with ``error``, its problems at their lines (status of error)."""
    problems = locate_problems(text, error.details, error.message) if error else []
    return page(
        request,
        "jobs/form.html",
        {
            "principal": principal,
            "section": "jobs",
            "job": job,
            "text": text,
            "problems": problems,
            "listing": _listing(text, problems),
        },
        status=error.status_code if error else 200,
    )


def _parse_params(text: str) -> dict[str, Any]:
    """Trigger params typed as YAML or JSON (JSON is YAML); empty text is no params."""
    if not text.strip():
        return {}
    try:
        return decode_document(text.encode(), YAML)
    except ValidationFailed as error:
        details = error.details if isinstance(error.details, list) else []
        kinds = {d.get("type") for d in details if isinstance(d, dict)}
        if "object_type" in kinds:
            raise ValidationFailed(
                "Params are a mapping of names to values, e.g. date: 2026-01-01"
            ) from error
        raise


# --------------------------------------------------------------------------- job page


@dataclass
class ScheduleView:
    row: Schedule
    fires: list[Tick]
    preview_error: str | None
    ticks: list[ScheduleTick]


async def _schedule_view(
    session: AsyncSession, principal: Principal, job_id: uuid.UUID
) -> ScheduleView:
    row = await schedules_service.schedule_of(session, principal, job_id)
    fires: list[Tick] = []
    preview_error = None
    try:
        fires = await schedules_service.preview(
            session, principal, job_id, count=PREVIEW_COUNT, after=None
        )
    except ValidationFailed as error:
        preview_error = error.message
    ticks, _ = await schedules_service.list_ticks(
        session, principal, job_id, limit=TICKS_SHOWN, before=None, outcome=None
    )
    return ScheduleView(row, [t for t in fires if t.instant is not None], preview_error, ticks)


async def _job_page(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    versions_before: int | None = None,
    params_text: str = "",
    trigger_problems: list[LocatedProblem] | None = None,
    status: int = 200,
    webhook_form: FormState = BLANK,
    created_webhook: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    job = await jobs_service.get_job(session, principal, job_id)
    graph = await jobs_service.get_graph(session, principal, job_id)
    versions, older_versions = await jobs_service.list_versions(
        session, principal, job_id, limit=VERSIONS_SHOWN, cursor=versions_before
    )
    runs, more_runs = await runs_service.list_runs(
        session, principal, job_id=job_id, statuses=[], cursor=None, limit=RECENT_RUNS
    )
    schedule = (
        await _schedule_view(session, principal, job_id) if job.spec.get("schedule") else None
    )
    spec = JobSpec.model_validate(job.spec)
    webhooks = await triggers_service.list_endpoints(session, principal, job_id)
    deliveries = await triggers_service.list_deliveries(
        session, principal, job_id=job_id, limit=RECENT_DELIVERIES
    )
    can_manage_webhooks = web_allows(principal, Permission.jobs_write)
    secret_names = (
        [secret.name for secret in await secrets_service.list_secrets(session, principal)]
        if can_manage_webhooks
        else []
    )
    response = page(
        request,
        "jobs/detail.html",
        {
            "principal": principal,
            "section": "jobs",
            "job": job,
            "spec": spec,
            "spec_text": spec_yaml(mask_literal_credentials(job.spec)),
            "dag": dag_svg(graph.layers, [(edge.source, edge.target) for edge in graph.edges]),
            "schedule": schedule,
            "versions": versions,
            "older_versions_url": (
                f"/jobs/{job.id}?versions_before={older_versions}#versions"
                if older_versions is not None
                else None
            ),
            "runs": runs,
            "more_runs": more_runs is not None,
            "params_text": params_text,
            "default_params": plain_yaml(job.spec["params"]) if job.spec.get("params") else "",
            "trigger_problems": trigger_problems or [],
            "webhooks": webhooks,
            "webhook_names": {hook.id: hook.name for hook in webhooks},
            "deliveries": deliveries,
            "can_manage_webhooks": can_manage_webhooks,
            "secret_names": secret_names,
            "webhook_values": webhook_form.values,
            "webhook_errors": webhook_form.errors,
            "webhook_message": webhook_form.message,
            "created_webhook": created_webhook,
            "notice": NOTICES.get(notice or ""),
        },
        status=webhook_form.status if webhook_form is not BLANK else status,
    )
    if created_webhook is not None:
        response.headers["Cache-Control"] = "no-store"  # the URL holds the webhook's secret
    return response


# ------------------------------------------------------------------------------- routes


@router.get("")
async def job_list(
    request: Request,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_read),
    cursor: Cursor = None,
) -> Response:
    """The tenant's jobs, newest first: last run, next fire time (or manual), paused."""
    jobs, next_cursor = await jobs_service.list_jobs(
        session, principal, limit=PAGE_SIZE, cursor=cursor
    )
    job_ids = [job.id for job in jobs]
    return page(
        request,
        "jobs/list.html",
        {
            "principal": principal,
            "section": "jobs",
            "jobs": jobs,
            "last_runs": await latest_runs.last_runs(session, principal, job_ids),
            "schedules": await schedules_service.schedules_of(session, principal, job_ids),
            "next_url": f"/jobs?cursor={quote(next_cursor)}" if next_cursor else None,
            "welcome": request.query_params.get("welcome") == "1",
        },
    )


@router.get("/new")
async def new_job_form(
    request: Request, principal: Principal = WebAuthorized(Permission.jobs_write)
) -> Response:
    """The create form, with a small example spec to start from."""
    return _spec_form(request, principal, NEW_JOB_TEXT)


@router.post("/new")
async def create_job(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
    spec: SpecText = "",
) -> Response:
    """Create the job from the YAML typed; its problems at their lines (422, 409 on a
    name in use), the text kept."""

    async def create(parsed: JobSpec) -> JobPublic:
        return await jobs_service.create_job(session, redis, principal, parsed)

    return await _save_spec(request, session, principal, spec, create)


async def _save_spec(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    spec: str,
    save: Callable[[JobSpec], Awaitable[JobPublic]],
    *,
    job: JobPublic | None = None,
) -> Response:
    """Save the YAML typed (create or edit), then open the job; on a refusal the form again
    with its problems at their lines (422, 409 on a name in use), the text kept."""
    try:
        async with session.begin_nested():  # a lost name race leaves the request usable
            saved = await save(parse_job_spec(spec.encode(), YAML))
    except (ValidationFailed, Conflict) as error:
        return _spec_form(request, principal, spec, job=job, error=error)
    return redirect(request, f"/jobs/{saved.id}")


@router.get("/{job_id}")
async def job_detail(
    request: Request,
    job_id: str,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_read),
    versions_before: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The job page: spec, DAG, schedule and ticks, versions, recent runs, trigger,
    webhooks and their deliveries."""
    return await _job_page(
        request,
        session,
        principal,
        _job_id(job_id),
        versions_before=versions_before,
        notice=notice,
    )


@router.get("/{job_id}/edit")
async def edit_job_form(
    request: Request,
    job_id: str,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """The edit form with the current spec as YAML (defaults left out)."""
    job = await jobs_service.get_job(session, principal, _job_id(job_id))
    return _spec_form(request, principal, spec_yaml(mask_literal_credentials(job.spec)), job=job)


@router.post("/{job_id}/edit")
async def edit_job(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
    spec: SpecText = "",
) -> Response:
    """Save the YAML as the job's next version (nothing changes if it is identical)."""
    job = await jobs_service.get_job(session, principal, _job_id(job_id))

    async def update(parsed: JobSpec) -> JobPublic:
        return await jobs_service.update_job(session, redis, principal, job.id, parsed)

    return await _save_spec(request, session, principal, spec, update, job=job)


@router.post("/{job_id}/delete")
async def delete_job(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Delete the job (its versions stay for past runs) and go back to the list."""
    await jobs_service.delete_job(session, redis, principal, _job_id(job_id))
    return redirect(request, "/jobs")


@router.post("/{job_id}/trigger")
async def trigger_run(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_operate),
    params: Annotated[str, Form()] = "",
) -> Response:
    """Trigger a run now with the params typed (over the job's defaults); open the run."""
    target = _job_id(job_id)
    try:
        body = RunTrigger(params=_parse_params(params))
    except ValidationFailed as error:
        problems = locate_problems(params, error.details, error.message)
    except ValidationError as error:
        problems = [LocatedProblem(None, format_path(e["loc"]), e["msg"]) for e in error.errors()]
    else:
        [(run, _created)] = await runs_service.trigger(session, redis, principal, target, [body])
        return redirect(request, f"/runs/{run.id}")
    return await _job_page(
        request,
        session,
        principal,
        target,
        params_text=params,
        trigger_problems=problems,
        status=422,
    )


@router.post("/{job_id}/pause")
async def pause_schedule(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_operate),
) -> Response:
    """Stop the schedule firing (instants due meanwhile follow its misfire policy)."""
    target = _job_id(job_id)
    await schedules_service.pause(session, redis, principal, target)
    return redirect(request, f"/jobs/{target}")


@router.post("/{job_id}/resume")
async def resume_schedule(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    redis: RedisDep,
    principal: Principal = WebAuthorized(Permission.runs_operate),
) -> Response:
    """Let the schedule fire again."""
    target = _job_id(job_id)
    await schedules_service.resume(session, redis, principal, target)
    return redirect(request, f"/jobs/{target}")


@router.get("/{job_id}/versions/{version}")
async def version_detail(
    request: Request,
    job_id: str,
    version: str,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_read),
) -> Response:
    """One version's spec as YAML."""
    target = _job_id(job_id)
    number = int(version) if version.isdigit() and 1 <= int(version) < MAX_VERSION else 0
    job = await jobs_service.get_job(session, principal, target)
    found, _ = await jobs_service.list_versions(
        session, principal, target, limit=1, cursor=number + 1
    )
    if not number or not found or found[0].version != number:
        raise NotFound("Job version not found")
    return page(
        request,
        "jobs/version.html",
        {
            "principal": principal,
            "section": "jobs",
            "job": job,
            "version": found[0],
            "spec_text": spec_yaml(mask_literal_credentials(found[0].spec)),
        },
    )


# ------------------------------------------------------------------------------ webhooks


def parse_mapping(text: str) -> dict[str, str]:
    """A webhook form's mapping: one ``param = $.path`` a line (blank lines skipped), as
    the API's ``mapping`` object; the paths are checked by ``WebhookCreate``."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(YAML_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        name, sep, path = line.partition("=")
        name, path = name.strip(), path.strip()
        problem = None
        if not sep or not name or not path:
            problem = f"line {number}: write param = $.path"
        elif name in mapping:
            problem = f"line {number}: the param {name} is mapped twice"
        if problem is not None:
            raise ValidationFailed(
                f"Mapping {problem}", details=[{"loc": ["body", "mapping"], "msg": problem}]
            )
        mapping[name] = path
    return mapping


def hook_url(request: Request, settings: Settings, token: str) -> str:
    """The absolute URL other systems POST to (the installation's public URL if set)."""
    base = settings.public_url or str(request.base_url)
    return base.rstrip("/") + triggers_service.hook_path(token)


@router.post("/{job_id}/webhooks")
async def create_webhook(
    request: Request,
    job_id: str,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    name: FormText = "",
    signature: Annotated[str, Form(max_length=20)] = "none",
    secret_name: FormText = "",
    tolerance_seconds: Annotated[str, Form(max_length=20)] = "",
    mapping: Annotated[str, Form(max_length=20_000)] = "",
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Create an inbound webhook (as ``POST /api/v1/jobs/{id}/webhooks``) and show its URL,
    this once; a refused form shows the job page again with the values and why."""
    target = _job_id(job_id)
    await jobs_service.get_job(session, principal, target)  # 404 before anything else
    values = {"name": name, "signature": signature, "secret_name": secret_name,
              "tolerance_seconds": tolerance_seconds, "mapping": mapping}  # fmt: skip

    async def create() -> tuple[WebhookEndpoint, str]:
        body: dict[str, Any] = {
            "name": name.strip(),
            "signature": signature or "none",
            "secret_name": secret_name.strip() or None,
            "mapping": parse_mapping(mapping),
        }
        if tolerance_seconds.strip():
            body["tolerance_seconds"] = tolerance_seconds.strip()
        parsed = WebhookCreate.model_validate(body)
        return await triggers_service.create_endpoint(session, principal, target, parsed)

    outcome = await submit(session, create, values, service_fields=True)
    if isinstance(outcome, Refused):
        return await _job_page(request, session, principal, target, webhook_form=outcome)
    endpoint, token = outcome
    created = {"endpoint": endpoint, "url": hook_url(request, settings, token)}
    return await _job_page(
        request, session, principal, target, webhook_form=CREATED, created_webhook=created
    )


@router.post("/{job_id}/webhooks/{endpoint_id}/delete")
async def delete_webhook(
    request: Request,
    job_id: str,
    endpoint_id: Annotated[str, Path(max_length=40)],
    _: CsrfChecked,
    session: SessionDep,
    principal: Principal = WebAuthorized(Permission.jobs_write),
) -> Response:
    """Revoke a webhook of this job (as ``DELETE /api/v1/webhooks/{id}``); its deliveries
    stay listed."""
    target = _job_id(job_id)
    try:
        parsed = uuid.UUID(endpoint_id)
    except ValueError:
        raise NotFound("Webhook not found") from None
    endpoint = await triggers_service.get_endpoint(session, principal, parsed)
    if endpoint.job_id != target:
        raise NotFound("Webhook not found")
    await triggers_service.delete_endpoint(session, principal, endpoint.id)
    return redirect(request, f"/jobs/{target}?notice=webhook-revoked#webhooks")

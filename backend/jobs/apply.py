"""GitOps: apply a whole set of job specs by name in one transaction.

A source (``managed_by``, e.g. ``git:acme/jobs``) owns the jobs it applies. Each spec is
created, updated (a new version) or left unchanged; with ``prune`` the source's jobs that
are no longer in the set are deleted - never a job of another source, nor one made by hand
(``managed_by`` unset). A job of the source edited by hand (in the dashboard or the API)
keeps its ``managed_by``, so prune deletes it like any other of the source's jobs. A
hand-made job of the same name is taken over by the source: ``adopted`` when its spec is
the applied one, ``updated`` (a new version) when it differs. One owned by another source
is a 409. ``dry_run`` answers the same plan and diff and writes nothing.

Optimistic concurrency: ``expected_versions`` maps names to the version the caller saw
(``null``: "did not exist"). The rows are locked first, then compared; any mismatch is a
409 and nothing changes, so two pipelines cannot silently overwrite each other. The CLI
sends the versions of the dry run it showed the user. When ``expected_versions`` is
given, a job the apply would write or delete that it does not name is a 409 too (see
``_check_covered``).
"""

from __future__ import annotations

import difflib
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import Conflict, ValidationFailed
from backend.core.principal import Principal
from backend.jobs import service
from backend.jobs.models import Job
from backend.jobs.repository import JobRepository, JobVersionRepository
from backend.jobs.schemas import ApplyChange, ApplyRequest, ApplyResult
from backend.jobs.spec import JobSpec, stored_form, validate_job_spec


@dataclass
class _Planned:
    name: str
    action: str
    job: Job | None
    spec: JobSpec | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def _in_field_order(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with its keys in the spec model's order (JSONB reorders keys), so a
    diff shows changes rather than reordering."""
    try:
        return stored_form(JobSpec.model_validate(spec))
    except ValidationError:  # written by an older schema: shown as stored
        return spec


# libyaml's emitter where it is installed: the pure-Python one took ~15 ms a spec, most of
# an apply of 500 new jobs.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml(spec: dict[str, Any] | None, *, ordered: bool = False) -> list[str]:
    """The spec as YAML lines; ``ordered``: already in field order (``stored_form``)."""
    if spec is None:
        return []
    if not ordered:
        spec = _in_field_order(spec)
    text = yaml.dump(spec, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    return text.splitlines(keepends=True)


def spec_diff(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """A unified diff of two stored specs as YAML (empty when they are equal). ``new`` is
    the applied spec's ``stored_form`` (in field order already)."""
    if old == new:
        return ""
    return "".join(
        difflib.unified_diff(
            _yaml(old),
            _yaml(new, ordered=True),
            fromfile=f"{name} (current)" if old is not None else "/dev/null",
            tofile=f"{name} (applied)" if new is not None else "/dev/null",
        )
    )


def _validate_all(documents: list[dict[str, Any]]) -> list[JobSpec]:
    """Every spec validated; all problems of all specs in one 422, located by index."""
    specs: list[JobSpec] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, document in enumerate(documents):
        try:
            spec = validate_job_spec(document)
        except ValidationFailed as error:
            found = error.details if isinstance(error.details, list) else []
            problems.extend(
                {**problem, "loc": ["jobs", index, *problem.get("loc", [])]} for problem in found
            )
            continue
        if spec.name in seen:
            problems.append(
                {
                    "loc": ["jobs", index, "name"],
                    "msg": f"{spec.name!r} is also job {seen[spec.name]} of this set",
                    "type": "duplicate",
                }
            )
        seen[spec.name] = index
        specs.append(spec)
    if problems:
        first = problems[0]
        raise ValidationFailed(
            f"The job set is not valid: {'.'.join(map(str, first['loc']))}: {first['msg']}",
            details=problems[:50],
        )
    return specs


async def _plan(
    session: AsyncSession, principal: Principal, request: ApplyRequest, specs: list[JobSpec]
) -> list[_Planned]:
    jobs = JobRepository(session, principal.tenant_id)
    versions = JobVersionRepository(session, principal.tenant_id)
    existing = {
        job.name: job for job in await jobs.for_apply([s.name for s in specs], request.managed_by)
    }
    _check_expected(request, existing)
    plan: list[_Planned] = []
    for spec in specs:
        new = stored_form(spec)
        job = existing.get(spec.name)
        if job is None:
            plan.append(_Planned(spec.name, "created", None, spec, None, new))
            continue
        if job.managed_by not in (None, request.managed_by):
            raise Conflict(
                f"Job {spec.name!r} is managed by {job.managed_by!r}",
                details=[
                    {
                        "loc": ["jobs", spec.name],
                        "msg": "managed by another source",
                        "type": "conflict",
                    }
                ],
            )
        current = await versions.get(job_id=job.id, version=job.current_version)
        old = current.spec if current is not None else None
        action = "updated" if old != new else "adopted" if job.managed_by is None else "unchanged"
        plan.append(_Planned(spec.name, action, job, spec, old, new))
    if request.prune:
        wanted = {spec.name for spec in specs}
        for job in existing.values():
            if job.managed_by == request.managed_by and job.name not in wanted:
                current = await versions.get(job_id=job.id, version=job.current_version)
                old = current.spec if current is not None else None
                plan.append(_Planned(job.name, "deleted", job, None, old, None))
    plan.sort(key=lambda item: item.name)
    _check_covered(request, plan)
    return plan


def _check_expected(request: ApplyRequest, existing: dict[str, Job]) -> None:
    """409 when a job's current version is not the one the caller saw."""
    stale = []
    for name, expected in sorted(request.expected_versions.items()):
        job = existing.get(name)
        found = job.current_version if job is not None else None
        if found != expected:
            stale.append(
                {
                    "loc": ["expected_versions", name],
                    "msg": f"expected version {expected}, found {found}",
                    "type": "stale",
                }
            )
    if stale:
        raise Conflict(
            f"The jobs changed since they were read ({len(stale)} stale); nothing was applied",
            details=stale,
        )


def _check_covered(request: ApplyRequest, plan: list[_Planned]) -> None:
    """With ``expected_versions``, 409 for any job this apply would write or delete that
    the caller did not see: e.g. a job of the same source made between the caller's dry
    run and this apply, which ``prune`` would otherwise delete unseen. Without
    ``expected_versions`` the plan is applied as it stands."""
    if "expected_versions" not in request.model_fields_set:
        return
    unseen = [
        {
            "loc": ["expected_versions", item.name],
            "msg": f"would be {item.action} but is not in expected_versions",
            "type": "unseen",
        }
        for item in plan
        if item.action != "unchanged" and item.name not in request.expected_versions
    ]
    if unseen:
        raise Conflict(
            f"{len(unseen)} job(s) would change that were not in the reviewed plan "
            f"({unseen[0]['loc'][1]!r} first); nothing was applied",
            details=unseen,
        )


async def apply_jobs(
    session: AsyncSession, redis: Redis, principal: Principal, request: ApplyRequest
) -> ApplyResult:
    """Apply ``request.jobs`` as the source ``request.managed_by``; see the module doc."""
    specs = _validate_all(request.jobs)
    plan = await _plan(session, principal, request, specs)
    created: dict[str, uuid.UUID] = {}
    new_specs = [item.spec for item in plan if item.action == "created" and item.spec]
    if new_specs and not request.dry_run:  # all new jobs at once: a few statements
        made = await service.create_jobs(
            session, redis, principal, new_specs, managed_by=request.managed_by
        )
        created = {job.name: job.id for job in made}
    changes: list[ApplyChange] = []
    for item in plan:
        job = item.job
        before = job.current_version if job is not None else None
        job_id = job.id if job is not None else None
        to_version: int | None = {
            "created": 1,
            "updated": (before or 0) + 1,
            "deleted": None,
        }.get(item.action, before)
        if item.name in created and item.action == "created":
            job_id = created[item.name]
        elif item.action != "unchanged" and not request.dry_run:
            job_id, to_version = await _write(session, redis, principal, request, item)
        changes.append(
            ApplyChange(
                name=item.name,
                action=item.action,
                job_id=job_id,
                from_version=before,
                to_version=to_version,
                diff=spec_diff(item.name, item.old, item.new),
            )
        )
    summary = dict(Counter(change.action for change in changes))
    if not request.dry_run and any(c.action != "unchanged" for c in changes):
        # Pending like the created jobs' events, so the chain has it after them.
        applied = audit.pending_row(
            tenant_id=principal.tenant_id,
            actor=principal.actor,
            origin=principal.origin,
            action="job.applied",
            target_type="job",
            details={"managed_by": request.managed_by, **summary},
        )
        await audit.append_pending(session, principal.tenant_id, [applied])
    return ApplyResult(
        managed_by=request.managed_by, dry_run=request.dry_run, changes=changes, summary=summary
    )


async def _write(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    request: ApplyRequest,
    item: _Planned,
) -> tuple[uuid.UUID, int | None]:
    """Carry out one planned change; the job's id and its version afterwards."""
    if item.action == "deleted" and item.job is not None:
        await service.delete_job(session, redis, principal, item.job.id)
        return item.job.id, None
    assert item.spec is not None
    if item.job is None:
        created = await service.create_job(session, redis, principal, item.spec)
        job = await JobRepository(session, principal.tenant_id).get_active(created.id)
        assert job is not None
    else:
        await service.update_job(session, redis, principal, item.job.id, item.spec)
        job = item.job
    job.managed_by = request.managed_by
    session.add(job)
    await session.flush()
    return job.id, job.current_version

"""POST /api/v1/jobs:apply: GitOps apply by name, prune, dry run, concurrency, roles."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.jobs.helpers import JOBS, create_job, job_spec

APPLY = "/api/v1/jobs:apply"


def source() -> str:
    return f"git:acme/jobs-{uuid.uuid4().hex[:8]}"


async def apply(
    client: AsyncClient, account: Account, managed_by: str, jobs: list[dict[str, Any]], **extra: Any
) -> Response:
    return await client.post(
        APPLY, json={"managed_by": managed_by, "jobs": jobs, **extra}, headers=account.headers
    )


def actions(response: Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {change["name"]: change["action"] for change in response.json()["changes"]}


async def job_by_name(client: AsyncClient, account: Account, name: str) -> dict[str, Any] | None:
    response = await client.get(JOBS, params={"name": name}, headers=account.headers)
    assert response.status_code == 200, response.text
    found = [job for job in response.json()["items"] if job["name"] == name]
    return found[0] if found else None


async def test_anonymous_is_401(client: AsyncClient) -> None:
    response = await client.post(APPLY, json={"managed_by": "git:x", "jobs": []})
    assert_error(response, 401, "unauthenticated")


async def test_viewer_and_operator_are_refused(client: AsyncClient, owner: Account) -> None:
    name = f"gitops-{uuid.uuid4().hex[:8]}"
    for role in ("viewer", "operator"):
        member = await create_member(client, owner, role)
        assert_error(await apply(client, member, source(), [job_spec(name)]), 403, "forbidden")
    assert await job_by_name(client, owner, name) is None


async def test_apply_twice_then_update_one(client: AsyncClient, owner: Account) -> None:
    editor = await create_member(client, owner, "editor")
    managed_by = source()
    specs = [job_spec(f"a-{uuid.uuid4().hex[:8]}"), job_spec(f"b-{uuid.uuid4().hex[:8]}")]
    first = await apply(client, editor, managed_by, specs)
    assert set(actions(first).values()) == {"created"}
    assert first.json()["summary"] == {"created": 2}
    assert all(c["to_version"] == 1 and c["diff"] for c in first.json()["changes"])

    second = await apply(client, editor, managed_by, specs)
    assert set(actions(second).values()) == {"unchanged"}
    assert all(c["diff"] == "" for c in second.json()["changes"])

    specs[0]["description"] = "changed in git"
    third = await apply(client, editor, managed_by, specs)
    assert actions(third) == {specs[0]["name"]: "updated", specs[1]["name"]: "unchanged"}
    [updated] = [c for c in third.json()["changes"] if c["action"] == "updated"]
    assert (updated["from_version"], updated["to_version"]) == (1, 2)
    assert "+description: changed in git" in updated["diff"]
    job = await job_by_name(client, owner, specs[0]["name"])
    assert job is not None
    assert job["current_version"] == 2
    assert job["managed_by"] == managed_by


async def test_prune_deletes_only_the_sources_jobs(client: AsyncClient, owner: Account) -> None:
    mine, other = source(), source()
    keep, gone = job_spec(), job_spec()
    foreign = job_spec()
    by_hand = await create_job(client, owner, job_spec())
    actions(await apply(client, owner, mine, [keep, gone]))
    actions(await apply(client, owner, other, [foreign]))

    without = await apply(client, owner, mine, [keep])
    assert actions(without) == {keep["name"]: "unchanged"}, "no prune: nothing deleted"
    assert await job_by_name(client, owner, gone["name"]) is not None

    pruned = await apply(client, owner, mine, [keep], prune=True)
    assert actions(pruned) == {keep["name"]: "unchanged", gone["name"]: "deleted"}
    assert await job_by_name(client, owner, gone["name"]) is None
    assert await job_by_name(client, owner, foreign["name"]) is not None
    assert await job_by_name(client, owner, by_hand["name"]) is not None


async def test_dry_run_writes_nothing(client: AsyncClient, owner: Account) -> None:
    managed_by = source()
    spec = job_spec()
    planned = await apply(client, owner, managed_by, [spec], dry_run=True)
    assert actions(planned) == {spec["name"]: "created"}
    [change] = planned.json()["changes"]
    assert change["job_id"] is None and change["to_version"] == 1
    assert f"+name: {spec['name']}" in change["diff"]
    assert await job_by_name(client, owner, spec["name"]) is None

    actions(await apply(client, owner, managed_by, [spec]))
    spec["queue"] = "etl"
    planned = await apply(client, owner, managed_by, [], dry_run=True, prune=True)
    assert actions(planned) == {spec["name"]: "deleted"}
    assert (await job_by_name(client, owner, spec["name"])) is not None


async def test_stale_expected_version_is_409_and_changes_nothing(
    client: AsyncClient, owner: Account
) -> None:
    managed_by = source()
    a, b = job_spec(), job_spec()
    actions(await apply(client, owner, managed_by, [a, b]))
    # Someone else moves job a to version 2 after this pipeline read version 1.
    a["description"] = "pipeline one"
    actions(await apply(client, owner, managed_by, [a, b]))
    a["description"] = "pipeline two"
    b["description"] = "pipeline two"
    stale = await apply(
        client, owner, managed_by, [a, b], expected_versions={a["name"]: 1, b["name"]: 1}
    )
    error = assert_error(stale, 409, "conflict")
    assert error["details"][0]["loc"] == ["expected_versions", a["name"]]
    job_b = await job_by_name(client, owner, b["name"])
    assert job_b is not None and job_b["current_version"] == 1, "b was not written either"

    fresh = await apply(
        client, owner, managed_by, [a, b], expected_versions={a["name"]: 2, b["name"]: 1}
    )
    assert actions(fresh) == {a["name"]: "updated", b["name"]: "updated"}
    # null: "the job did not exist when I read it"
    assert_error(
        await apply(client, owner, managed_by, [a], expected_versions={a["name"]: None}),
        409,
        "conflict",
    )
    new = job_spec()
    created = await apply(client, owner, managed_by, [new], expected_versions={new["name"]: None})
    assert actions(created) == {new["name"]: "created"}


async def test_concurrent_applies_do_not_overwrite_each_other(
    client: AsyncClient, owner: Account
) -> None:
    managed_by = source()
    spec = job_spec()
    actions(await apply(client, owner, managed_by, [spec]))
    one = {**spec, "description": "one"}
    two = {**spec, "description": "two"}
    results = await asyncio.gather(
        apply(client, owner, managed_by, [one], expected_versions={spec["name"]: 1}),
        apply(client, owner, managed_by, [two], expected_versions={spec["name"]: 1}),
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    job = await job_by_name(client, owner, spec["name"])
    assert job is not None and job["current_version"] == 2


async def test_job_of_another_source_is_409(client: AsyncClient, owner: Account) -> None:
    spec = job_spec()
    actions(await apply(client, owner, source(), [spec]))
    spec["description"] = "taken over?"
    assert_error(await apply(client, owner, source(), [spec]), 409, "conflict")


async def test_hand_made_job_is_adopted(client: AsyncClient, owner: Account) -> None:
    spec = job_spec()
    await create_job(client, owner, spec)
    managed_by = source()
    assert actions(await apply(client, owner, managed_by, [spec])) == {spec["name"]: "adopted"}
    job = await job_by_name(client, owner, spec["name"])
    assert job is not None and job["managed_by"] == managed_by and job["current_version"] == 1


async def test_invalid_set_is_422_and_changes_nothing(client: AsyncClient, owner: Account) -> None:
    good, bad = job_spec(), job_spec()
    bad["tasks"][1]["depends_on"] = ["missing"]
    error = assert_error(
        await apply(client, owner, source(), [good, bad]), 422, "validation_failed"
    )
    assert error["details"][0]["loc"][:2] == ["jobs", 1]
    assert await job_by_name(client, owner, good["name"]) is None
    duplicate = assert_error(
        await apply(client, owner, source(), [good, dict(good)]), 422, "validation_failed"
    )
    assert duplicate["details"][0]["type"] == "duplicate"
    assert_error(await apply(client, owner, "no spaces allowed", [good]), 422, "validation_failed")
    assert_error(
        await client.post(APPLY, json={"jobs": []}, headers=owner.headers), 422, "validation_failed"
    )


async def test_other_tenants_jobs_are_invisible(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    managed_by = source()
    spec = job_spec()
    actions(await apply(client, stranger, managed_by, [spec]))
    assert actions(await apply(client, owner, managed_by, [spec])) == {spec["name"]: "created"}
    pruned = await apply(client, owner, managed_by, [], prune=True)
    assert actions(pruned) == {spec["name"]: "deleted"}
    assert await job_by_name(client, stranger, spec["name"]) is not None


async def test_apply_is_audited_and_a_dry_run_is_not(client: AsyncClient, owner: Account) -> None:
    managed_by = source()
    spec = job_spec()
    actions(await apply(client, owner, managed_by, [spec], dry_run=True))
    actions(await apply(client, owner, managed_by, [spec]))
    actions(await apply(client, owner, managed_by, [spec]))  # unchanged: nothing to record
    response = await client.get("/api/v1/audit", headers=owner.headers)
    assert response.status_code == 200, response.text
    events = [e for e in response.json()["items"] if e["action"] in ("job.applied", "job.created")]
    assert [e["action"] for e in events] == ["job.applied", "job.created"]
    assert events[0]["details"] == {"managed_by": managed_by, "created": 1}


async def test_concurrent_creates_of_one_name_are_200_and_409(
    client: AsyncClient, owner: Account
) -> None:
    spec = job_spec()
    results = await asyncio.gather(
        apply(client, owner, source(), [spec], expected_versions={spec["name"]: None}),
        apply(client, owner, source(), [spec], expected_versions={spec["name"]: None}),
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    job = await job_by_name(client, owner, spec["name"])
    assert job is not None and job["current_version"] == 1


async def test_many_scheduled_jobs_are_created_in_one_apply(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    """New jobs of an apply are created together (a few statements for all): each has its
    version, its schedule row with the next instant, its ``job.created`` event."""
    managed_by = source()
    specs = [
        job_spec(f"every-{i:03d}", schedule={"cron": "0 3 * * *", "timezone": "Europe/Berlin"})
        for i in range(150)
    ]
    specs[0]["schedule"]["paused"] = True
    response = await apply(client, owner, managed_by, specs)
    assert set(actions(response).values()) == {"created"}
    ids = {change["job_id"] for change in response.json()["changes"]}
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT j.id, j.managed_by, v.version, s.paused, s.next_due_at "
                    "FROM jobs j JOIN job_versions v ON v.job_id = j.id "
                    "JOIN schedules s ON s.job_id = j.id WHERE j.tenant_id = :t"
                ),
                {"t": owner.tenant_id},
            )
        ).all()
    assert {str(row.id) for row in rows} == ids and len(rows) == 150
    assert all(row.managed_by == managed_by and row.version == 1 for row in rows)
    assert sum(row.paused for row in rows) == 1
    assert all(row.next_due_at is not None for row in rows)
    assert all(row.next_due_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 3 for row in rows)

    async def created_events() -> int:
        async with owner_engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM audit_events "
                            "WHERE tenant_id = :t AND action = 'job.created'"
                        ),
                        {"t": owner.tenant_id},
                    )
                ).scalar_one()
            )

    await eventually(created_events, lambda n: n == 150, what="150 job.created events")
    again = await apply(client, owner, managed_by, specs)
    assert set(actions(again).values()) == {"unchanged"}


async def test_triggers_within_one_apply_are_checked_together(
    client: AsyncClient, owner: Account
) -> None:
    first, second = job_spec(), job_spec()
    first["triggers"] = [{"on": "run_finished", "job": second["name"]}]
    second["triggers"] = [{"on": "run_finished", "job": first["name"]}]
    error = assert_error(
        await apply(client, owner, source(), [first, second]), 422, "validation_failed"
    )
    assert error["details"][0]["type"] == "trigger_cycle"
    assert await job_by_name(client, owner, first["name"]) is None
    assert await job_by_name(client, owner, second["name"]) is None
    # One way only: the downstream job names a job of the same apply, which is fine.
    del second["triggers"]
    assert actions(await apply(client, owner, source(), [first, second])) == {
        first["name"]: "created",
        second["name"]: "created",
    }


async def test_a_job_unseen_by_the_plan_is_409_not_pruned(
    client: AsyncClient, owner: Account
) -> None:
    """A job of the same source made between a pipeline's dry run and its apply is not in
    the plan's expected_versions: pruning it silently would delete what nobody reviewed."""
    managed_by = source()
    keep, gone = job_spec(), job_spec()
    actions(await apply(client, owner, managed_by, [keep, gone]))
    plan = await apply(client, owner, managed_by, [keep], prune=True, dry_run=True)
    assert actions(plan) == {keep["name"]: "unchanged", gone["name"]: "deleted"}
    expected = {c["name"]: c["from_version"] for c in plan.json()["changes"]}

    late = job_spec()  # another pipeline of the same source, after the dry run
    actions(await apply(client, owner, managed_by, [keep, gone, late]))

    refused = await apply(client, owner, managed_by, [keep], prune=True, expected_versions=expected)
    error = assert_error(refused, 409, "conflict")
    assert error["details"] == [
        {
            "loc": ["expected_versions", late["name"]],
            "msg": "would be deleted but is not in expected_versions",
            "type": "unseen",
        }
    ]
    for spec in (keep, gone, late):
        job = await job_by_name(client, owner, spec["name"])
        assert job is not None and job["current_version"] == 1, "nothing was applied"

    # A job to be created or updated must be in expected_versions as well.
    keep["description"] = "changed"
    refused = await apply(client, owner, managed_by, [keep], expected_versions={})
    assert_error(refused, 409, "conflict")
    # Without expected_versions the plan is applied as it stands: late is pruned too.
    pruned = await apply(client, owner, managed_by, [keep], prune=True)
    assert actions(pruned) == {
        keep["name"]: "updated",
        gone["name"]: "deleted",
        late["name"]: "deleted",
    }

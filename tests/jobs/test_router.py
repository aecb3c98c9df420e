"""/api/v1/jobs: create, list, read, replace (versions), delete; roles, isolation, audit."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, bearer, create_api_token, create_member
from tests.jobs.helpers import JOBS, create_job, job_spec

YAML = {"Content-Type": "application/yaml"}


async def put_job(
    client: AsyncClient, account: Account, job_id: str, spec: dict[str, Any]
) -> Response:
    return await client.put(f"{JOBS}/{job_id}", json=spec, headers=account.headers)


async def versions(client: AsyncClient, account: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{JOBS}/{job_id}/versions", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def job_events(client: AsyncClient, owner: Account) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/audit", params={"action": "job", "limit": 200}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def all_pages(client: AsyncClient, account: Account, **params: Any) -> list[list[str]]:
    """Names on every page of the listing, following next_cursor."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(JOBS, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["name"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not end"


# ----------------------------------------------------------------------------------- create


async def test_create_job(client: AsyncClient, owner: Account) -> None:
    spec = job_spec("nightly-etl", queue="etl", concurrency_policy="forbid")
    response = await client.post(JOBS, json=spec, headers=owner.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "description",
        "queue",
        "concurrency_policy",
        "current_version",
        "managed_by",
        "created_at",
        "updated_at",
        "spec",
    }
    uuid.UUID(body["id"])
    assert body["name"] == "nightly-etl"
    assert body["description"] == "test job"
    assert body["queue"] == "etl"
    assert body["concurrency_policy"] == "forbid"
    assert body["current_version"] == 1
    assert body["managed_by"] is None, "made by hand, not by jobs:apply"
    assert body["created_at"] == body["updated_at"]
    assert body["spec"]["name"] == "nightly-etl"
    assert body["spec"]["tasks"][1]["depends_on"] == ["extract"]
    # Stored with defaults filled in.
    assert body["spec"]["tasks"][0]["retry"]["max_attempts"] == 1
    assert body["spec"]["params"] == {}
    fetched = await client.get(f"{JOBS}/{body['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_create_job_from_yaml(client: AsyncClient, owner: Account) -> None:
    body = b"""
name: yaml-job
params: {date: 2026-01-01}
schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
tasks:
  - name: extract
    type: shell
    command: echo hello
    retry: {max_attempts: 3, initial_delay: 1, factor: 2, max_delay: 60, jitter: true}
  - {name: crunch, type: python, function: "mypkg.tasks:crunch", depends_on: [extract]}
"""
    response = await client.post(JOBS, content=body, headers={**owner.headers, **YAML})
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert spec["params"] == {"date": "2026-01-01"}
    assert spec["schedule"] == {
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "misfire": "fire_once",
        "max_catchup": 10,
        "concurrency_policy": None,
        "start_at": None,
        "end_at": None,
        "paused": False,
        "jitter_seconds": 0,
        "dst_gap": "shift",
        "dst_overlap": "first",
    }
    assert spec["tasks"][0]["retry"]["max_attempts"] == 3


@pytest.mark.parametrize("content_type", ["application/x-yaml", "text/yaml; charset=utf-8"])
async def test_yaml_content_types(client: AsyncClient, owner: Account, content_type: str) -> None:
    name = f"j-{uuid.uuid4().hex[:8]}"
    body = f"name: {name}\ntasks: [{{name: a, type: shell, command: x}}]\n"
    response = await client.post(
        JOBS, content=body.encode(), headers={**owner.headers, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == name
    assert [(t["name"], t["command"]) for t in created["spec"]["tasks"]] == [("a", "x")]


async def test_json_and_yaml_bodies_store_the_same_spec(
    client: AsyncClient, owner: Account
) -> None:
    created = await create_job(client, owner, job_spec("same"))
    as_yaml = "\n".join(
        [
            "name: same",
            "description: test job",
            "tasks:",
            "  - {name: extract, type: shell, command: echo hi}",
            "  - name: notify",
            "    type: http",
            "    url: https://example.org/hook",
            "    method: POST",
            "    depends_on: [extract]",
        ]
    )
    response = await client.put(
        f"{JOBS}/{created['id']}", content=as_yaml.encode(), headers={**owner.headers, **YAML}
    )
    assert response.status_code == 200, response.text
    assert response.json()["current_version"] == 1  # identical: no new version


async def test_editor_can_create(client: AsyncClient, editor: Account) -> None:
    await create_job(client, editor)


async def test_duplicate_name_is_409(client: AsyncClient, owner: Account, editor: Account) -> None:
    await create_job(client, owner, job_spec("taken"))
    error = assert_error(
        await client.post(JOBS, json=job_spec("taken"), headers=editor.headers), 409, "conflict"
    )
    assert "taken" in error["message"]
    listed = (await client.get(JOBS, headers=owner.headers)).json()["items"]
    names = [item["name"] for item in listed]
    assert names.count("taken") == 1


async def test_concurrent_creates_with_one_name(client: AsyncClient, owner: Account) -> None:
    responses = await asyncio.gather(
        *(client.post(JOBS, json=job_spec("racy"), headers=owner.headers) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "conflict")


async def test_same_name_in_two_tenants(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    await create_job(client, owner, job_spec("shared-name"))
    await create_job(client, stranger, job_spec("shared-name"))


async def test_invalid_spec_is_422_with_paths(client: AsyncClient, owner: Account) -> None:
    spec = job_spec()
    spec["tasks"][0]["timeout_seconds"] = 0
    spec["tasks"][1]["depends_on"] = ["ghost"]
    error = assert_error(
        await client.post(JOBS, json=spec, headers=owner.headers), 422, "validation_failed"
    )
    assert {tuple(d["loc"]) for d in error["details"]} == {
        ("tasks", 0, "timeout_seconds"),
        ("tasks", 1, "depends_on", 0),
    }
    assert (await client.get(JOBS, headers=owner.headers)).json()["items"] == []


async def test_cycle_is_named(client: AsyncClient, owner: Account) -> None:
    spec = job_spec()
    spec["tasks"][0]["depends_on"] = ["notify"]
    error = assert_error(
        await client.post(JOBS, json=spec, headers=owner.headers), 422, "validation_failed"
    )
    assert "cycle: extract -> notify -> extract" in error["details"][0]["msg"]


BILLION_LAUGHS = b"""name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
tasks: [{name: a, type: shell, command: x}]
"""


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/json"),
        (b"{", "application/json"),
        (b"garbage \x00\x01", None),
        (b"\xff\xfe\xfd", "application/json"),
        (b"\xff\xfe\xfd", "application/yaml"),
        (b"[1, 2, 3]", "application/json"),
        (b'"a string"', "application/json"),
        (b"- just\n- a list\n", "application/yaml"),
        (b"key: [unclosed", "application/yaml"),
        (BILLION_LAUGHS, "application/yaml"),
        (b"[" * 500_000, "application/json"),
        (b"[" * 500_000, "application/yaml"),
        (b"x: !!python/object/apply:os.system [id]", "application/yaml"),
        (
            b'{"name": "x", "tasks": [{"name": "a", "type": "shell", "command": "x"}], "n": NaN}',
            "application/json",
        ),
        (
            b"name: x\nparams: {b: !!binary aGk=}\ntasks: [{name: a, type: shell, command: x}]",
            "application/yaml",
        ),
        (b"<xml/>", "application/xml"),
        (b"name=x&tasks=y", "application/x-www-form-urlencoded"),
    ],
)
async def test_garbage_bodies_are_4xx(
    client: AsyncClient, owner: Account, body: bytes, content_type: str | None
) -> None:
    headers = {**owner.headers, **({"Content-Type": content_type} if content_type else {})}
    for response in (
        await client.post(JOBS, content=body, headers=headers),
        await client.put(
            f"{JOBS}/{(await create_job(client, owner))['id']}", content=body, headers=headers
        ),
    ):
        error = assert_error(response, 422, "validation_failed")
        assert error["details"], error


async def test_oversize_body_is_413(client: AsyncClient, owner: Account) -> None:
    spec = job_spec(description="x" * 2_000_000)
    response = await client.post(
        JOBS,
        content=json.dumps(spec).encode(),
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


async def test_large_but_bounded_spec_is_accepted(client: AsyncClient, owner: Account) -> None:
    tasks = [{"name": "t0", "type": "shell", "command": "x"}] + [
        {"name": f"t{i}", "type": "shell", "command": "x", "depends_on": [f"t{i - 1}"]}
        for i in range(1, 1000)
    ]
    job = await create_job(client, owner, job_spec(tasks=tasks))
    assert len(job["spec"]["tasks"]) == 1000
    too_many = [{"name": f"t{i}", "type": "shell", "command": "x"} for i in range(1001)]
    error = assert_error(
        await client.post(JOBS, json=job_spec(tasks=too_many), headers=owner.headers),
        422,
        "validation_failed",
    )
    assert error["details"][0]["loc"] == ["tasks"]


# ------------------------------------------------------------------------------------- list


async def test_list_jobs_newest_first(client: AsyncClient, owner: Account) -> None:
    for name in ("first", "second", "third"):
        await create_job(client, owner, job_spec(name))
    response = await client.get(JOBS, headers=owner.headers)
    assert response.status_code == 200
    body = response.json()
    assert [item["name"] for item in body["items"]] == ["third", "second", "first"]
    assert body["next_cursor"] is None
    assert body["items"][0]["spec"]["name"] == "third"


async def test_list_pages_with_cursor(client: AsyncClient, owner: Account) -> None:
    names = [f"job-{i:02d}" for i in range(7)]
    for name in names:
        await create_job(client, owner, job_spec(name))
    pages = await all_pages(client, owner, limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [name for page in pages for name in page] == list(reversed(names))


async def test_list_pages_with_created_at_ties(
    client: AsyncClient, owner: Account, owner_engine: Any
) -> None:
    from sqlalchemy import text

    for i in range(5):
        await create_job(client, owner, job_spec(f"tie-{i}"))
    async with owner_engine.begin() as conn:
        result = await conn.execute(
            text("UPDATE jobs SET created_at = '2026-01-01T00:00:00Z' WHERE tenant_id = :t"),
            {"t": owner.tenant_id},
        )
        assert result.rowcount == 5
    pages = await all_pages(client, owner, limit=2)
    seen = [name for page in pages for name in page]
    assert sorted(seen) == [f"tie-{i}" for i in range(5)]


async def test_list_filters_by_name_prefix(client: AsyncClient, owner: Account) -> None:
    for name in ("etl-daily", "etl-hourly", "report", "etl_x", "etlXy"):
        await create_job(client, owner, job_spec(name))

    async def named(prefix: str) -> list[str]:
        response = await client.get(JOBS, params={"name": prefix}, headers=owner.headers)
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json()["items"])

    assert await named("etl-") == ["etl-daily", "etl-hourly"]
    assert await named("etl_") == ["etl_x"]  # "_" is not a wildcard
    assert await named("report") == ["report"]
    assert await named("zzz") == []


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "garbage"},
        {"cursor": "2026-01-01T00:00:00_abc"},
        {"limit": 0},
        {"limit": 201},
        {"cursor": "2026-01-01T00:00:00_" + uuid.uuid4().hex},
        {"name": "x" * 101},
        {"name": "a\x00"},
        {"name": "a%"},
        {"name": "ä"},
    ],
)
async def test_list_rejects_bad_query(
    client: AsyncClient, owner: Account, params: dict[str, Any]
) -> None:
    assert_error(
        await client.get(JOBS, params=params, headers=owner.headers), 422, "validation_failed"
    )


# --------------------------------------------------------------------------- get, not found


async def test_unknown_job_is_404(client: AsyncClient, owner: Account) -> None:
    missing = uuid.uuid4()
    assert_error(await client.get(f"{JOBS}/{missing}", headers=owner.headers), 404, "not_found")
    assert_error(await put_job(client, owner, str(missing), job_spec()), 404, "not_found")
    assert_error(await client.delete(f"{JOBS}/{missing}", headers=owner.headers), 404, "not_found")
    assert_error(
        await client.get(f"{JOBS}/{missing}/versions", headers=owner.headers), 404, "not_found"
    )


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_id_is_422(client: AsyncClient, owner: Account, bad_id: str) -> None:
    assert_error(
        await client.get(f"{JOBS}/{bad_id}", headers=owner.headers), 422, "validation_failed"
    )
    assert_error(await put_job(client, owner, bad_id, job_spec()), 422, "validation_failed")
    assert_error(
        await client.delete(f"{JOBS}/{bad_id}", headers=owner.headers), 422, "validation_failed"
    )
    assert_error(
        await client.get(f"{JOBS}/{bad_id}/versions", headers=owner.headers),
        422,
        "validation_failed",
    )


# -------------------------------------------------------------------------- replace (PUT)


async def test_replace_creates_versions(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, job_spec("versioned"))
    for n in (2, 3):
        spec = job_spec("versioned", description=f"v{n}", queue=f"q{n}")
        response = await put_job(client, owner, job["id"], spec)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["current_version"] == n
        assert body["description"] == f"v{n}"
        assert body["queue"] == f"q{n}"
        assert body["spec"]["description"] == f"v{n}"
        assert body["created_at"] == job["created_at"]
        assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(
            job["updated_at"]
        )
    items = await versions(client, owner, job["id"])
    assert [v["version"] for v in items] == [3, 2, 1]
    assert [v["spec"]["description"] for v in items] == ["v3", "v2", "test job"]
    assert all(v["created_by"] == str(owner.user_id) for v in items)
    assert set(items[0]) == {"version", "spec", "created_at", "created_by"}
    current = (await client.get(f"{JOBS}/{job['id']}", headers=owner.headers)).json()
    assert current["current_version"] == 3
    assert current["spec"] == items[0]["spec"]


async def test_identical_replace_creates_no_version(client: AsyncClient, owner: Account) -> None:
    spec = job_spec("stable")
    job = await create_job(client, owner, spec)
    events_before = await job_events(client, owner)
    # Identical once defaults are filled in: explicit defaults count as the same spec.
    same = {**spec, "queue": "default", "concurrency_policy": "allow", "params": {}}
    response = await put_job(client, owner, job["id"], same)
    assert response.status_code == 200, response.text
    assert response.json() == job
    assert [v["version"] for v in await versions(client, owner, job["id"])] == [1]
    assert await job_events(client, owner) == events_before


async def test_replace_can_rename(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, job_spec("old-name"))
    response = await put_job(client, owner, job["id"], job_spec("new-name"))
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "new-name"
    assert response.json()["current_version"] == 2
    await create_job(client, owner, job_spec("old-name"))  # the old name is free again


async def test_replace_cannot_take_a_used_name(client: AsyncClient, owner: Account) -> None:
    await create_job(client, owner, job_spec("one"))
    two = await create_job(client, owner, job_spec("two"))
    assert_error(await put_job(client, owner, two["id"], job_spec("one")), 409, "conflict")
    assert [v["version"] for v in await versions(client, owner, two["id"])] == [1]
    assert (await client.get(f"{JOBS}/{two['id']}", headers=owner.headers)).json()["name"] == "two"


async def test_invalid_replace_changes_nothing(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner)
    spec = job_spec(job["name"])
    spec["tasks"] = []
    assert_error(await put_job(client, owner, job["id"], spec), 422, "validation_failed")
    assert [v["version"] for v in await versions(client, owner, job["id"])] == [1]


async def test_replace_with_yaml(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, job_spec("yaml-put"))
    body = b"name: yaml-put\ntasks: [{name: only, type: shell, command: date}]\n"
    response = await client.put(
        f"{JOBS}/{job['id']}", content=body, headers={**owner.headers, **YAML}
    )
    assert response.status_code == 200, response.text
    assert [t["name"] for t in response.json()["spec"]["tasks"]] == ["only"]
    assert response.json()["current_version"] == 2


async def test_concurrent_replaces_get_consecutive_versions(
    client: AsyncClient, owner: Account
) -> None:
    job = await create_job(client, owner, job_spec("busy"))
    responses = await asyncio.gather(
        *(
            put_job(client, owner, job["id"], job_spec("busy", description=f"d{i}"))
            for i in range(5)
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["current_version"] for r in responses) == [2, 3, 4, 5, 6]
    assert [v["version"] for v in await versions(client, owner, job["id"])] == [6, 5, 4, 3, 2, 1]


async def test_versions_page_with_cursor(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, job_spec("paged"))
    for n in range(2, 6):
        await put_job(client, owner, job["id"], job_spec("paged", description=f"v{n}"))
    url = f"{JOBS}/{job['id']}/versions"
    first = (await client.get(url, params={"limit": 2}, headers=owner.headers)).json()
    assert [v["version"] for v in first["items"]] == [5, 4]
    assert first["next_cursor"] == "4"
    second = (await client.get(url, params={"limit": 2, "cursor": 4}, headers=owner.headers)).json()
    assert [v["version"] for v in second["items"]] == [3, 2]
    third = (await client.get(url, params={"limit": 2, "cursor": 2}, headers=owner.headers)).json()
    assert [v["version"] for v in third["items"]] == [1]
    assert third["next_cursor"] is None
    assert_error(
        await client.get(url, params={"cursor": 0}, headers=owner.headers), 422, "validation_failed"
    )


# ----------------------------------------------------------------------------------- delete


async def test_delete_job(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, job_spec("doomed"))
    response = await client.delete(f"{JOBS}/{job['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error(await client.get(f"{JOBS}/{job['id']}", headers=owner.headers), 404, "not_found")
    assert_error(
        await client.delete(f"{JOBS}/{job['id']}", headers=owner.headers), 404, "not_found"
    )
    assert_error(await put_job(client, owner, job["id"], job_spec("doomed")), 404, "not_found")
    assert_error(
        await client.get(f"{JOBS}/{job['id']}/versions", headers=owner.headers), 404, "not_found"
    )
    listed = (await client.get(JOBS, headers=owner.headers)).json()["items"]
    assert job["id"] not in [item["id"] for item in listed]


async def test_name_is_reusable_after_delete(client: AsyncClient, owner: Account) -> None:
    first = await create_job(client, owner, job_spec("phoenix"))
    assert (await client.delete(f"{JOBS}/{first['id']}", headers=owner.headers)).status_code == 204
    second = await create_job(client, owner, job_spec("phoenix"))
    assert second["id"] != first["id"]
    assert second["current_version"] == 1
    assert [
        item["name"] for item in (await client.get(JOBS, headers=owner.headers)).json()["items"]
    ] == ["phoenix"]


async def test_delete_keeps_versions_for_runs(
    client: AsyncClient, owner: Account, owner_engine: Any
) -> None:
    from sqlalchemy import text

    job = await create_job(client, owner)
    await client.delete(f"{JOBS}/{job['id']}", headers=owner.headers)
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT j.deleted_at, count(v.*) AS n FROM jobs j "
                    "JOIN job_versions v ON v.job_id = j.id WHERE j.id = :id "
                    "GROUP BY j.deleted_at"
                ),
                {"id": uuid.UUID(job["id"])},
            )
        ).one()
    assert row.deleted_at is not None
    assert row.n == 1


# ------------------------------------------------------------------------------- permissions


async def test_anonymous_is_401(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner)
    url = f"{JOBS}/{job['id']}"
    for response in (
        await client.post(JOBS, json=job_spec()),
        await client.get(JOBS),
        await client.get(url),
        await client.put(url, json=job_spec()),
        await client.delete(url),
        await client.get(f"{url}/versions"),
        await client.post(JOBS, content=b"\xff garbage"),
    ):
        assert_error(response, 401, "unauthenticated")
    nonsense = await client.get(JOBS, headers={"Authorization": "Bearer nonsense"})
    assert_error(nonsense, 401, "invalid_token")
    assert (await client.get(url, headers=owner.headers)).json()["current_version"] == 1


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_readers_can_read_but_not_write(
    client: AsyncClient, owner: Account, role: str
) -> None:
    reader = await create_member(client, owner, role)
    job = await create_job(client, owner, job_spec("readable"))
    url = f"{JOBS}/{job['id']}"
    assert (await client.get(JOBS, headers=reader.headers)).json()["items"][0]["id"] == job["id"]
    assert (await client.get(url, headers=reader.headers)).json() == job
    assert len(await versions(client, reader, job["id"])) == 1
    assert_error(await client.post(JOBS, json=job_spec(), headers=reader.headers), 403, "forbidden")
    assert_error(await put_job(client, reader, job["id"], job_spec("x")), 403, "forbidden")
    assert_error(await client.delete(url, headers=reader.headers), 403, "forbidden")
    assert (await client.get(url, headers=owner.headers)).json() == job


async def test_editor_can_replace_and_delete(
    client: AsyncClient, owner: Account, editor: Account
) -> None:
    job = await create_job(client, owner)
    response = await put_job(client, editor, job["id"], job_spec(job["name"], description="e"))
    assert response.status_code == 200, response.text
    assert (await versions(client, owner, job["id"]))[0]["created_by"] == str(editor.user_id)
    assert (await client.delete(f"{JOBS}/{job['id']}", headers=editor.headers)).status_code == 204


async def test_api_token_roles(client: AsyncClient, owner: Account) -> None:
    viewer_token = (await create_api_token(client, owner, "viewer"))["token"]
    editor_token = (await create_api_token(client, owner, "editor"))["token"]
    assert_error(
        await client.post(JOBS, json=job_spec(), headers=bearer(viewer_token)), 403, "forbidden"
    )
    response = await client.post(JOBS, json=job_spec(), headers=bearer(editor_token))
    assert response.status_code == 201, response.text
    assert (await client.get(JOBS, headers=bearer(viewer_token))).status_code == 200


# -------------------------------------------------------------------------------- isolation


async def test_other_tenants_jobs_are_404(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    job = await create_job(client, owner, job_spec("private"))
    url = f"{JOBS}/{job['id']}"
    assert_error(await client.get(url, headers=stranger.headers), 404, "not_found")
    assert_error(await put_job(client, stranger, job["id"], job_spec("stolen")), 404, "not_found")
    assert_error(await client.delete(url, headers=stranger.headers), 404, "not_found")
    assert_error(await client.get(f"{url}/versions", headers=stranger.headers), 404, "not_found")
    assert (await client.get(JOBS, headers=stranger.headers)).json()["items"] == []
    assert (await client.get(JOBS, params={"name": "priv"}, headers=stranger.headers)).json()[
        "items"
    ] == []
    after = (await client.get(url, headers=owner.headers)).json()
    assert after == job


# ------------------------------------------------------------------------------------ audit


async def test_each_change_is_audited(client: AsyncClient, owner: Account, editor: Account) -> None:
    job = await create_job(client, editor, job_spec("audited"))
    await put_job(client, editor, job["id"], job_spec("audited", description="two"))
    await put_job(client, editor, job["id"], job_spec("audited-renamed", description="two"))
    await client.delete(f"{JOBS}/{job['id']}", headers=editor.headers)
    await client.get(JOBS, headers=editor.headers)  # reads are not audited
    events = list(reversed(await job_events(client, owner)))
    assert [e["action"] for e in events] == [
        "job.created",
        "job.updated",
        "job.updated",
        "job.deleted",
    ]
    assert all(e["target_type"] == "job" and e["target_id"] == job["id"] for e in events)
    assert all(e["actor_id"] == str(editor.user_id) for e in events)
    assert events[0]["details"] == {"name": "audited", "version": 1}
    assert events[1]["details"] == {"version": 2}
    assert events[2]["details"] == {"version": 3, "renamed_from": "audited"}
    assert events[3]["details"] == {"name": "audited-renamed", "version": 3}


async def test_failed_changes_are_not_audited(client: AsyncClient, owner: Account) -> None:
    await create_job(client, owner, job_spec("exists"))
    before = await job_events(client, owner)
    await client.post(JOBS, json=job_spec("exists"), headers=owner.headers)  # 409
    await client.post(JOBS, json={"name": "x"}, headers=owner.headers)  # 422
    await client.delete(f"{JOBS}/{uuid.uuid4()}", headers=owner.headers)  # 404
    assert await job_events(client, owner) == before


# ---------------------------------------------------------------------------------- openapi


async def test_openapi_documents_json_and_yaml_bodies(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, method in ((JOBS, "post"), (JOBS + "/{job_id}", "put")):
        operation = document["paths"][path][method]
        content = operation["requestBody"]["content"]
        assert set(content) == {"application/json", "application/yaml"}
        schema = content["application/yaml"]["schema"]
        assert set(schema["required"]) == {"name", "tasks"}
        assert "tasks" in schema["properties"]
        assert operation["description"] or operation["summary"]
    for path in (JOBS, JOBS + "/{job_id}", JOBS + "/{job_id}/versions"):
        for operation in document["paths"][path].values():
            assert operation.get("description"), (path, operation.get("operationId"))

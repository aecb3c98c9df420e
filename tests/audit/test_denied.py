"""Denied requests are audited: an authenticated 403 or 404 leaves a ``request.denied``
event in the caller's own tenant, written in its own transaction, and the hash chain
stays intact."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import head_seq, rows_after, verify
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task


def denied(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["action"] == "request.denied"]


async def test_a_viewers_forbidden_call_is_audited_in_its_tenant(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, app: FastAPI
) -> None:
    viewer = await create_member(client, owner, "viewer")
    before = await head_seq(owner_engine, owner.tenant_id)
    spec = {"name": "not-allowed", "tasks": [python_task("a")]}
    response = await client.post("/api/v1/jobs", json=spec, headers=viewer.headers)
    assert_error(response, 403, "forbidden")
    [event] = denied(await rows_after(owner_engine, owner.tenant_id, before))
    assert event["outcome"] == "denied"
    assert (event["actor_type"], event["actor_id"]) == ("user", str(viewer.user_id))
    assert event["actor_label"] == viewer.email
    assert event["details"] == {
        "method": "POST",
        "path": "/api/v1/jobs",
        "status": 403,
        "code": "forbidden",
    }
    assert event["request_id"] == response.headers["x-request-id"]
    assert (await verify(app, owner.tenant_id)).intact


async def test_another_tenants_object_is_audited_in_the_callers_tenant(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    owner_engine: AsyncEngine,
    app: FastAPI,
) -> None:
    job = await create_job(client, stranger, [python_task("a")])
    mine, theirs = (
        await head_seq(owner_engine, owner.tenant_id),
        await head_seq(owner_engine, stranger.tenant_id),
    )
    path = f"/api/v1/jobs/{job['id']}"
    response = await client.get(path, headers=owner.headers)
    assert_error(response, 404, "not_found")
    [event] = denied(await rows_after(owner_engine, owner.tenant_id, mine))
    assert event["actor_id"] == str(owner.user_id) and event["outcome"] == "denied"
    assert event["details"]["path"] == path and event["details"]["status"] == 404
    assert event["details"]["method"] == "GET"
    # Nothing in the other tenant's log: the caller learns nothing about it there either.
    assert await rows_after(owner_engine, stranger.tenant_id, theirs) == []
    assert (await verify(app, owner.tenant_id)).intact
    assert (await verify(app, stranger.tenant_id)).intact


async def test_an_api_token_denied_is_audited_as_the_token(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    created = await client.post(
        "/api/v1/tokens", json={"name": "ro", "role": "viewer"}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    token = created.json()
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await client.delete(
        f"/api/v1/members/{owner.user_id}",
        headers={"Authorization": f"Bearer {token['token']}"},
    )
    assert_error(response, 403, "forbidden")
    [event] = denied(await rows_after(owner_engine, owner.tenant_id, before))
    assert (event["actor_type"], event["actor_id"]) == ("token", token["id"])


async def test_anonymous_and_successful_requests_are_not_audited_as_denied(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    assert_error(await client.get(f"/api/v1/jobs/{uuid.uuid4()}"), 401, "unauthenticated")
    assert (await client.get("/api/v1/jobs", headers=owner.headers)).status_code == 200
    assert denied(await rows_after(owner_engine, owner.tenant_id, before)) == []

"""A tenant never sees, triggers, cancels or reads another tenant's jobs, runs or logs."""

from __future__ import annotations

import json

from httpx import AsyncClient
from redis.asyncio import Redis

from kernel.wire import keys
from kernel.wire.protocol import TASK_FIELD
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.fixtures.streams import observe
from tests.runs.factories import create_job, shell_task, trigger, wait_for_run


async def test_runs_and_logs_of_another_tenant_are_404(
    client: AsyncClient, owner: Account, stranger: Account, redis: Redis, running_worker: object
) -> None:
    job = await create_job(client, owner, [shell_task("say", "echo secret-of-owner")])
    dispatched = await observe(redis, keys.queue_stream(str(owner.tenant_id), "default"))
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"])
    base = f"/api/v1/runs/{run['id']}"
    for method, url in (
        ("GET", base),
        ("GET", base + "/logs"),
        ("POST", base + "/cancel"),
        ("POST", base + "/rerun"),
        ("POST", f"/api/v1/jobs/{job['id']}/runs"),
        ("POST", f"/api/v1/jobs/{job['id']}/runs/batch"),
    ):
        body = {"runs": [{}]} if url.endswith("batch") else {}
        response = await client.request(method, url, json=body, headers=stranger.headers)
        assert_error(response, 404, "not_found")
        assert "secret-of-owner" not in response.text
    listing = await client.get("/api/v1/runs", headers=stranger.headers)
    assert run["id"] not in listing.text
    filtered = await client.get(f"/api/v1/runs?job_id={job['id']}", headers=stranger.headers)
    assert filtered.json()["items"] == []

    # Dispatch went to the owner's own stream only, and says so in every message.
    entries = await dispatched.read()
    assert entries and all(
        json.loads(fields[TASK_FIELD])["tenant_id"] == str(owner.tenant_id) for fields in entries
    )
    assert not await redis.exists(keys.queue_stream(str(stranger.tenant_id), "default"))

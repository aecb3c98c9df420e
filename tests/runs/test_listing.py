"""Listing runs: filters by job, status and creation time, and their validation."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, trigger


async def listed(client: AsyncClient, owner: Account, **query: str) -> list[str]:
    response = await client.get("/api/v1/runs?" + urlencode(query), headers=owner.headers)
    assert response.status_code == 200, response.text
    return [run["id"] for run in response.json()["items"]]


async def test_runs_filter_by_creation_time(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, [python_task("a")])
    first = await trigger(client, owner, job["id"], delay_seconds=3600)
    second = await trigger(client, owner, job["id"], delay_seconds=3600)
    first_at, second_at = first["created_at"], second["created_at"]

    assert await listed(client, owner, created_after=first_at) == [second["id"], first["id"]]
    assert await listed(client, owner, created_after=second_at) == [second["id"]]
    assert await listed(client, owner, created_before=second_at) == [first["id"]]
    assert await listed(client, owner, created_before=first_at) == []
    between = await listed(client, owner, created_after=first_at, created_before=second_at)
    assert between == [first["id"]]
    later = (datetime.fromisoformat(second_at) + timedelta(hours=1)).isoformat()
    assert await listed(client, owner, created_after=later) == []
    assert await listed(client, owner, created_after=first_at, job_id=job["id"], limit="1") == [
        second["id"]
    ]


async def test_creation_time_filters_are_validated(client: AsyncClient, owner: Account) -> None:
    for query in (
        {"created_after": "yesterday"},
        {"created_before": "2030-01-01T00:00:00"},  # no offset: which zone?
        {"created_after": "2030-01-02T00:00:00Z", "created_before": "2030-01-01T00:00:00Z"},
        {"created_after": "2030-01-01T00:00:00Z", "created_before": "2030-01-01T00:00:00Z"},
    ):
        response = await client.get("/api/v1/runs?" + urlencode(query), headers=owner.headers)
        assert_error(response, 422, "validation_failed")
        assert response.json()["error"]["code"] == "validation_failed"

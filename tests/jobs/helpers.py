"""Job specs and a create_job factory shared by the jobs, apply and templates tests."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account

JOBS = "/api/v1/jobs"

EXAMPLE_YAML = b"""
name: nightly-etl            # unique per tenant
description: optional text
queue: default
params: {date: "2026-01-01"}
timeout_seconds: 3600
concurrency_policy: allow
schedule: {cron: "30 2 * * *", timezone: "Europe/Berlin"}
tasks:
  - name: extract
    type: shell
    command: "echo hello"
    env: {KEY: value}
    timeout_seconds: 60
    retry: {max_attempts: 3, initial_delay: 1, factor: 2, max_delay: 60, jitter: true}
    depends_on: []
    queue: io-bound
  - {name: notify, type: http, depends_on: [extract], method: POST,
     url: "https://example.org/hook", headers: {}, body: null, expect_status: [200, 204]}
  - {name: crunch, type: python, function: "mypkg.tasks:crunch", kwargs: {}, depends_on: [extract]}
  - {name: box, type: docker, image: "alpine:3", command: ["echo", "hi"], env: {}}
"""


def job_spec(name: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid two-task spec."""
    return {
        "name": name or f"job-{uuid.uuid4().hex[:10]}",
        "description": "test job",
        "tasks": [
            {"name": "extract", "type": "shell", "command": "echo hi"},
            {
                "name": "notify",
                "type": "http",
                "url": "https://example.org/hook",
                "method": "POST",
                "depends_on": ["extract"],
            },
        ],
        **overrides,
    }


async def create_job(
    client: AsyncClient, account: Account, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(JOBS, json=spec or job_spec(), headers=account.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())

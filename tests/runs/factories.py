"""Factories for jobs and runs, through the public API."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually

FINISHED = {"succeeded", "failed", "cancelled"}


def python_task(name: str, function: str = "worker.builtins:noop", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "function": function, **extra}


def shell_task(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "shell", "command": command, **extra}


async def create_job(
    client: AsyncClient, account: Account, tasks: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    spec = {"name": f"job-{uuid.uuid4().hex[:8]}", "tasks": tasks, **extra}
    response = await client.post("/api/v1/jobs", json=spec, headers=account.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def trigger(
    client: AsyncClient, account: Account, job_id: str, expect: int = 201, **body: Any
) -> dict[str, Any]:
    response = await client.post(f"/api/v1/jobs/{job_id}/runs", json=body, headers=account.headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def wait_for_run(
    client: AsyncClient,
    account: Account,
    run_id: str,
    *,
    timeout: float = 20.0,
    statuses: set[str] = FINISHED,
) -> dict[str, Any]:
    """Poll the run until it reaches one of ``statuses``; returns its detail."""

    async def detail() -> dict[str, Any]:
        response = await client.get(f"/api/v1/runs/{run_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    return await eventually(
        detail,
        lambda run: run["status"] in statuses,
        timeout=timeout,
        what=f"run {run_id} reaching {sorted(statuses)}",
    )


async def run_detail(client: AsyncClient, account: Account, run_id: str) -> dict[str, Any]:
    """The run as ``GET /api/v1/runs/{id}`` shows it (tasks and their attempts included)."""
    response = await client.get(f"/api/v1/runs/{run_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def task_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in run["tasks"] if t["name"] == name)

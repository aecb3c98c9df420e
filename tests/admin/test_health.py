"""GET /api/v1/admin/health: live workers, queue depth, scheduler replicas and leases, read
from Redis as the running worker, engine and scheduler write them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.settings import Settings
from backend.scheduler.loop import Scheduler
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger
from worker.runner import Worker

HEALTH = "/api/v1/admin/health"


async def health(client: AsyncClient, account: Account) -> dict[str, Any]:
    response = await client.get(HEALTH, headers=account.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def health_when(
    client: AsyncClient,
    account: Account,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the health report until ``check`` holds."""
    return await eventually(
        lambda: health(client, account), check, timeout=timeout, interval=0.1, what="health"
    )


async def test_only_superusers(client: AsyncClient, owner: Account) -> None:
    assert_error(await client.get(HEALTH), 401, "unauthenticated")
    for role in ("owner", "admin", "viewer"):
        account = owner if role == "owner" else await create_member(client, owner, role)
        assert_error(await client.get(HEALTH, headers=account.headers), 403, "forbidden")


async def test_report_shape(client: AsyncClient, superuser: Account) -> None:
    report = await health(client, superuser)
    assert set(report) == {
        "checked_at",
        "workers",
        "queues",
        "scheduler_replicas",
        "scheduler_leases",
        "leases_truncated",
    }


async def test_a_running_worker_is_listed(
    client: AsyncClient, superuser: Account, running_worker: Worker
) -> None:
    def fresh(report: dict[str, Any]) -> bool:  # it heartbeats every 0.5 s: a fresh beat
        return any(
            w["name"] == "worker-test" and 0 <= w["seconds_since_heartbeat"] < 1
            for w in report["workers"]
        )

    report = await health_when(client, superuser, fresh)
    worker = next(w for w in report["workers"] if w["name"] == "worker-test")
    assert worker["queues"] == ["default"]
    assert worker["concurrency"] == 8


async def test_queue_depth_counts_what_no_worker_has_read(
    client: AsyncClient,
    superuser: Account,
    owner: Account,
    parked_queue: str,
    running_worker: Worker,
) -> None:
    job = await create_job(client, owner, [python_task("noop")], queue=parked_queue)
    runs = [await trigger(client, owner, job["id"]) for _ in range(2)]

    def parked(report: dict[str, Any]) -> dict[str, Any] | None:
        return next((q for q in report["queues"] if q["queue"] == parked_queue), None)

    report = await health_when(
        client, superuser, lambda r: (parked(r) or {}).get("depth") == len(runs)
    )
    assert parked(report) == {
        "queue": parked_queue,
        "depth": 2,
        "pending": 0,
        "tenants": 1,
    }
    for run in runs:
        await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_scheduler_replicas_and_leases(
    app: FastAPI,
    client: AsyncClient,
    superuser: Account,
    owner: Account,
    engine_settings: Settings,
) -> None:
    settings = engine_settings.model_copy(
        update={"scheduler_lease_seconds": 2.0, "scheduler_poll_seconds": 0.1}
    )
    job = await create_job(client, owner, [python_task("noop")], schedule={"cron": "0 0 1 1 *"})
    name = f"sched-{uuid.uuid4().hex[:6]}"
    scheduler = Scheduler(settings, app.state.sessionmaker, app.state.redis, name=name)
    task = asyncio.create_task(scheduler.run())
    try:
        replica = await health_when(
            client, superuser, lambda r: any(s["name"] == name for s in r["scheduler_replicas"])
        )
        assert next(s for s in replica["scheduler_replicas"] if s["name"] == name)["live"]
        # A lease is taken while the tenant has a schedule due: make it due every second.
        await _reschedule(client, owner, job["id"], "* * * * * *")
        report = await health_when(
            client,
            superuser,
            lambda r: any(le["tenant_id"] == str(owner.tenant_id) for le in r["scheduler_leases"]),
        )
        lease = next(
            le for le in report["scheduler_leases"] if le["tenant_id"] == str(owner.tenant_id)
        )
        assert lease["tenant_slug"] == owner.tenant_slug
        assert lease["fencing_token"] >= 1
        assert 0 < lease["expires_in_ms"] <= 2000
        assert lease["replica"] in {s["name"] for s in report["scheduler_replicas"]}
    finally:
        await _delete_job(client, owner, job["id"])
        scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
    after = await health(client, superuser)
    assert name not in {s["name"] for s in after["scheduler_replicas"]}


async def _reschedule(client: AsyncClient, owner: Account, job_id: str, cron: str) -> None:
    current = await client.get(f"/api/v1/jobs/{job_id}", headers=owner.headers)
    assert current.status_code == 200, current.text
    spec = {
        "name": current.json()["name"],
        "schedule": {"cron": cron},
        "tasks": [python_task("noop")],
    }
    updated = await client.put(f"/api/v1/jobs/{job_id}", json=spec, headers=owner.headers)
    assert updated.status_code == 200, updated.text


async def _delete_job(client: AsyncClient, owner: Account, job_id: str) -> None:
    deleted = await client.delete(f"/api/v1/jobs/{job_id}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.text

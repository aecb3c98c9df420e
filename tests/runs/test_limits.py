"""Quotas, fair admission across tenants, run deadlines, live logs, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.settings import Settings
from tests.fixtures.errors import assert_error
from tests.fixtures.execution import spawn_worker, worker_config
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import (
    create_job,
    python_task,
    run_detail,
    shell_task,
    task_of,
    trigger,
    wait_for_run,
)
from worker.runner import Worker


async def _set_quota(owner_engine: AsyncEngine, account: Account, limit: int) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE tenants SET max_concurrent_tasks = :n WHERE id = :t"),
            {"n": limit, "t": account.tenant_id},
        )


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


async def test_tenant_quota_caps_concurrent_tasks(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, running_worker: object
) -> None:
    await _set_quota(owner_engine, owner, 2)
    job = await create_job(
        client, owner, [python_task("wait", "tests.runs.tasks:wait", kwargs={"seconds": 0.3})]
    )
    batch = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch", json={"runs": [{}] * 6}, headers=owner.headers
    )
    runs = [await wait_for_run(client, owner, r["id"]) for r in batch.json()["runs"]]
    attempts = [task_of(r, "wait")["attempts"][0] for r in runs]
    intervals = [
        (datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(a["finished_at"]))
        for a in attempts
    ]
    assert all(r["status"] == "succeeded" for r in runs)
    assert _max_overlap(intervals) == 2, sorted(
        (a["started_at"], a["finished_at"], a["attempt"]) for a in attempts
    )


async def test_a_small_tenant_is_not_stuck_behind_a_big_backlog(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    owner_engine: AsyncEngine,
    running_worker: object,
) -> None:
    await _set_quota(owner_engine, owner, 1000)
    big = await create_job(
        client, owner, [python_task("wait", "tests.runs.tasks:wait", kwargs={"seconds": 0.05})]
    )
    backlog = await client.post(
        f"/api/v1/jobs/{big['id']}/runs/batch", json={"runs": [{}] * 300}, headers=owner.headers
    )
    assert backlog.status_code == 201
    small = await create_job(client, stranger, [python_task("noop")])
    run = await trigger(client, stranger, small["id"])
    done = await wait_for_run(client, stranger, run["id"], timeout=60)
    small_start = datetime.fromisoformat(task_of(done, "noop")["started_at"])
    last = [
        await wait_for_run(client, owner, r["id"], timeout=120)
        for r in backlog.json()["runs"][-20:]
    ]
    backlog_starts = [datetime.fromisoformat(task_of(r, "wait")["started_at"]) for r in last]
    # The single task did not wait for the 300-task backlog to drain.
    assert small_start < max(backlog_starts)


async def test_run_timeout_fails_the_run_and_stops_its_tasks(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [shell_task("sleepy", "sleep 300")], timeout_seconds=1)
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"], timeout=20)
    assert done["status"] == "failed" and done["reason"] == "timeout"
    assert task_of(done, "sleepy")["status"] == "cancelled"
    assert task_of(done, "sleepy")["reason"] == "run_timeout"


async def test_logs_are_readable_while_the_task_runs(
    client: AsyncClient, owner: Account, running_worker: object, tmp_path: Path
) -> None:
    marker = tmp_path / "go"  # the task prints "late" only once the test has read "early"
    hold = f"for i in $(seq 1200); do [ -e {marker} ] && break; sleep 0.05; done"
    job = await create_job(client, owner, [shell_task("chatty", f"echo early; {hold}; echo late")])
    run = await trigger(client, owner, job["id"])

    async def logged() -> list[str]:
        response = await client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers)
        return [line["line"] for line in response.json()["items"]]

    try:
        assert await eventually(logged, what="the first line") == ["early"]
        detail = (await client.get(f"/api/v1/runs/{run['id']}", headers=owner.headers)).json()
        assert detail["status"] == "running"
    finally:
        marker.touch()
    await wait_for_run(client, owner, run["id"])
    response = await client.get(
        f"/api/v1/runs/{run['id']}/logs?task=chatty&attempt=1", headers=owner.headers
    )
    assert [line["line"] for line in response.json()["items"]] == ["early", "late"]
    missing = await client.get(f"/api/v1/runs/{run['id']}/logs?task=nope", headers=owner.headers)
    assert_error(missing, 404, "not_found")


async def test_docker_task_fails_clearly_without_an_engine(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client, owner, [{"name": "box", "type": "docker", "image": "alpine:3", "command": ["true"]}]
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    box = task_of(done, "box")
    assert done["status"] == "failed"
    assert box["reason"] == "unsupported"
    assert "Docker" in box["error"]


async def test_a_stopping_worker_lets_running_tasks_finish_then_hands_back_the_rest(
    client: AsyncClient, owner: Account, app: FastAPI, running_worker: object
) -> None:
    queue = "drainq"
    job = await create_job(
        client,
        owner,
        [
            python_task("short", "tests.runs.tasks:wait", kwargs={"seconds": 0.5}, queue=queue),
            python_task("long", "tests.runs.tasks:wait", kwargs={"seconds": 30}, queue=queue),
        ],
    )
    run = await trigger(client, owner, job["id"])
    leaving = Worker(
        app.state.redis,
        worker_config(name="worker-leaving", queues=(queue,), shutdown_grace_seconds=1.5),
    )
    task = asyncio.create_task(leaving.run())
    await wait_for_run(client, owner, run["id"], statuses={"running"})
    await eventually(lambda: len(leaving.running), lambda n: n == 2, what="both running")
    leaving.stop()  # what SIGTERM calls (backend/processes.py; see the next test)
    await asyncio.wait_for(task, timeout=15)
    # Both sides of the hand-back: the run detail reads tasks and attempts in two
    # statements, so one answer can show the released attempt with the task row from just
    # before the engine's commit. The hand-back must not use up an attempt (max 2 now).
    detail = await eventually(
        lambda: run_detail(client, owner, run["id"]),
        lambda d: (
            task_of(d, "long")["attempts"][0]["status"] == "released"
            and task_of(d, "long")["max_attempts"] == 2
        ),
        what="the long task handed back without using up an attempt",
    )
    assert [a["status"] for a in task_of(detail, "short")["attempts"]] == ["succeeded"]
    long_task = task_of(detail, "long")
    assert long_task["attempts"][0]["status"] == "released"
    # Handed back: queued for another worker (or already taken by one: never this one).
    assert long_task["status"] in ("queued", "running"), long_task
    assert all(a["worker"] != "worker-leaving" for a in long_task["attempts"][1:]), long_task
    assert long_task["max_attempts"] == 2  # the hand-back did not use up an attempt
    await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_sigterm_lets_a_worker_process_finish_its_running_task_and_exit(
    client: AsyncClient, owner: Account, settings: Settings, tmp_path: Path
) -> None:
    queue = f"termq-{tmp_path.name[-8:]}"
    marker = tmp_path / "go"
    job = await create_job(
        client,
        owner,
        [python_task("held", "tests.runs.tasks:wait_for_file", kwargs={"path": str(marker)})],
        queue=queue,
    )
    worker = spawn_worker(settings, queue)
    try:
        run = await trigger(client, owner, job["id"])
        await wait_for_run(client, owner, run["id"], statuses={"running"}, timeout=30)
        worker.send_signal(signal.SIGTERM)  # the task is mid-flight
        marker.touch()  # ... and finishes inside the shutdown grace
        assert await asyncio.to_thread(worker.wait, 30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded", done
    assert [a["status"] for a in task_of(done, "held")["attempts"]] == ["succeeded"]

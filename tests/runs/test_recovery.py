"""No loss, no duplicates: a SIGKILLed worker, lost attempts, a Redis that comes back empty."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import tenant_transaction
from backend.core.settings import Settings
from backend.engine.events import MAX_LOST_ATTEMPTS, fail_tasks
from backend.engine.loop import Engine
from kernel.dag.plan import PLANS
from tests.engine.helpers import dispatched
from tests.fixtures.execution import running_in_task, spawn_worker, worker_config
from tests.fixtures.factories import Account, create_tenant
from tests.fixtures.services import Services
from tests.fixtures.stack import private_baton
from tests.runs.factories import create_job, python_task, task_of, trigger, wait_for_run
from worker.runner import Worker

ROOT = Path(__file__).resolve().parents[2]


async def test_sigkilled_worker_task_finishes_on_another_worker_exactly_once(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    settings: Settings,
    running_worker: object,
) -> None:
    queue = "killq"
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "long",
                "tests.runs.tasks:wait",
                kwargs={"seconds": 1.5},
                retry={"max_attempts": 2, "initial_delay": 0},
            )
        ],
        queue=queue,
    )
    doomed = spawn_worker(settings, queue)
    try:
        run = await trigger(client, owner, job["id"])
        running = await wait_for_run(client, owner, run["id"], statuses={"running"}, timeout=30)
        first_worker = task_of(running, "long")["worker"]
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    rescuer = Worker(app.state.redis, worker_config(name="worker-rescuer", queues=(queue,)))
    async with running_in_task(rescuer):
        done = await wait_for_run(client, owner, run["id"], timeout=30)
    assert done["status"] == "succeeded", done
    attempts = task_of(done, "long")["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"], attempts
    assert attempts[0]["reason"] == "lost" and attempts[0]["worker"] == first_worker
    assert attempts[1]["worker"] == "worker-rescuer"


async def test_redis_flushed_mid_run_every_run_still_completes(services: Services) -> None:
    # Its own database, Redis database, engine and worker: the flush must not wipe the
    # queues and leases of the session's engine, worker and schedulers.
    async with private_baton(services) as baton:
        client = baton.client
        owner = await create_tenant(client)
        job = await create_job(
            client,
            owner,
            [
                python_task("slow", "tests.runs.tasks:wait", kwargs={"seconds": 1}),
                python_task("next", depends_on=["slow"]),
            ],
        )
        runs = [await trigger(client, owner, job["id"]) for _ in range(3)]
        await wait_for_run(client, owner, runs[0]["id"], statuses={"running"})
        await baton.app.state.redis.flushdb()
        for run in runs:
            done = await wait_for_run(client, owner, run["id"], timeout=30)
            assert done["status"] == "succeeded", done
            assert task_of(done, "next")["status"] == "succeeded"
            # The running attempt was not dispatched again: its worker reported on.
            attempts = task_of(done, "slow")["attempts"]
            assert [a["status"] for a in attempts] == ["succeeded"], attempts


async def test_a_killed_workers_attempt_is_lost_not_timed_out_and_costs_no_retry(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    settings: Settings,
    running_worker: object,
) -> None:
    """One attempt allowed, and its worker is SIGKILLed: the attempt is recognised as lost
    once its heartbeat stops (before its deadline would call it a timeout), and is run
    again without using up the task's only attempt."""
    queue = "lostq"
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "once",
                "tests.runs.tasks:wait",
                kwargs={"seconds": 1.0},
                timeout_seconds=3,
                retry={"max_attempts": 1},
            )
        ],
        queue=queue,
    )
    doomed = spawn_worker(settings, queue)
    try:
        run = await trigger(client, owner, job["id"])
        await wait_for_run(client, owner, run["id"], statuses={"running"}, timeout=30)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    rescuer = Worker(app.state.redis, worker_config(name="worker-lost-rescuer", queues=(queue,)))
    async with running_in_task(rescuer):
        done = await wait_for_run(client, owner, run["id"], timeout=30)
    assert done["status"] == "succeeded", done
    attempts = task_of(done, "once")["attempts"]
    assert [(a["status"], a["reason"]) for a in attempts] == [
        ("failed", "lost"),
        ("succeeded", None),
    ], attempts
    assert attempts[1]["worker"] == "worker-lost-rescuer"


async def test_a_task_whose_attempts_keep_getting_lost_fails_as_lost_on_the_third(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    owner_engine: AsyncEngine,
) -> None:
    """Lost attempts are retried outside the retry budget, up to MAX_LOST_ATTEMPTS."""
    job = await create_job(
        client,
        owner,
        [python_task("doomed", retry={"max_attempts": 5, "initial_delay": 0})],
        queue=f"nobody-{uuid.uuid4().hex[:8]}",  # no worker serves it: we play the worker
    )
    run = await trigger(client, owner, job["id"])
    for attempt in range(1, MAX_LOST_ATTEMPTS + 1):
        row = await dispatched(owner_engine, run["id"], attempt)
        task_id = uuid.UUID(str(row.id))
        async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
            effects = await fail_tasks(
                session, owner.tenant_id, [(task_id, attempt, "lost", "worker gone")], PLANS
            )
        await running_engine.after_effects(owner.tenant_id, effects)
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "failed", done
    task = task_of(done, "doomed")
    assert (task["status"], task["reason"]) == ("failed", "lost")
    assert [a["reason"] for a in task["attempts"]] == ["lost"] * MAX_LOST_ATTEMPTS
    # Two lost attempts were free; the task's own budget of 5 was never touched.
    assert task["max_attempts"] == 5 + MAX_LOST_ATTEMPTS - 1

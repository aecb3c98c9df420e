"""No loss, no duplicates: a SIGKILLed worker and a Redis that comes back empty."""

from __future__ import annotations

import asyncio
import signal

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.settings import Settings
from tests.fixtures.execution import spawn_worker, worker_config
from tests.fixtures.factories import Account, create_tenant
from tests.fixtures.services import Services
from tests.fixtures.stack import private_baton
from tests.runs.factories import create_job, python_task, task_of, trigger, wait_for_run
from worker.runner import Worker


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
    rescuing = asyncio.create_task(rescuer.run())
    try:
        done = await wait_for_run(client, owner, run["id"], timeout=30)
    finally:
        rescuer.stop()
        await asyncio.wait_for(rescuing, timeout=10)
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
            slow = task_of(done, "slow")["attempts"]
            assert len([a for a in slow if a["status"] == "succeeded"]) == 1

"""Each domain metric moves when its event happens: a task runs, fails, is re-dispatched,
a schedule fires, a worker heartbeats, a queue fills."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis

from backend.metrics.gather import QueueGatherer
from backend.scheduler.loop import Scheduler
from kernel.metrics import REGISTRY, TENANTS
from kernel.wire import keys
from kernel.wire.streams import ensure_group
from tests.fixtures.factories import Account, create_tenant
from tests.fixtures.services import Services
from tests.fixtures.stack import PrivateBaton, private_baton
from tests.fixtures.waiting import eventually
from tests.metrics.helpers import value
from tests.runs.factories import create_job, python_task, shell_task, trigger, wait_for_run
from worker.runner import Worker


@pytest.fixture
def tenant(owner: Account) -> Iterator[str]:
    """Give the test's tenant a label value of its own, so its counts start at zero."""
    TENANTS.configure([str(owner.tenant_id)])
    yield str(owner.tenant_id)
    TENANTS.configure([])


@pytest.fixture(scope="module")
async def quiet(services: Services) -> AsyncIterator[PrivateBaton]:
    """A stack of its own for the counters every tenant moves (no tenant label): only this
    module's tests run anything in it, so their deltas are exact."""
    async with private_baton(services) as baton:
        # The engine's first sweep reconciles an empty Redis: wait for it, so it cannot
        # count a test's task later.
        await eventually(
            lambda: baton.app.state.redis.exists(keys.engine_epoch()),
            what="the private engine's first reconciliation",
        )
        yield baton


async def test_a_task_that_succeeds(
    client: AsyncClient, owner: Account, tenant: str, running_worker: Worker
) -> None:
    job = await create_job(
        client, owner, [python_task("add", "tests.runs.tasks:add", kwargs={"a": 1, "b": 2})]
    )
    run = await trigger(client, owner, job["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    await eventually(
        lambda: value("baton_runs_finished_total", tenant=tenant, status="succeeded") == 1
    )
    assert (
        value(
            "baton_task_attempts_finished_total", tenant=tenant, status="succeeded", reason="none"
        )
        == 1
    )
    assert value("baton_tasks_dispatched_total", tenant=tenant) == 1
    assert value("baton_task_start_latency_seconds_count", tenant=tenant) == 1
    assert value("baton_task_start_latency_seconds_sum", tenant=tenant) >= 0
    assert value("baton_task_duration_seconds_count", tenant=tenant, status="succeeded") == 1
    assert value("baton_runs_finished_total", tenant=tenant, status="failed") == 0


async def test_the_engine_observes_the_lag_of_each_event(quiet: PrivateBaton) -> None:
    """The lag histogram has no tenant label: measured on the quiet stack, where this
    test's task is the only one."""
    started = value("baton_engine_event_lag_seconds_count", kind="started")
    finished = value("baton_engine_event_lag_seconds_count", kind="finished")
    owner = await create_tenant(quiet.client)
    job = await create_job(quiet.client, owner, [python_task("noop")])
    run = await trigger(quiet.client, owner, job["id"])
    assert (await wait_for_run(quiet.client, owner, run["id"]))["status"] == "succeeded"
    await eventually(
        lambda: value("baton_engine_event_lag_seconds_count", kind="finished") == finished + 1,
        what="the finished event's lag observed",
    )
    assert value("baton_engine_event_lag_seconds_count", kind="started") == started + 1


async def test_a_run_cancelled_through_the_api_counts_as_finished(
    client: AsyncClient, owner: Account, tenant: str
) -> None:
    job = await create_job(client, owner, [shell_task("wait", "sleep 30")])
    run = await trigger(client, owner, job["id"])  # no worker: it stays queued
    response = await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    await eventually(
        lambda: value("baton_runs_finished_total", tenant=tenant, status="cancelled") == 1
    )


async def test_a_task_that_fails_then_succeeds_on_retry(
    client: AsyncClient, owner: Account, tenant: str, running_worker: Worker, tmp_path: object
) -> None:
    retry = {"max_attempts": 2, "initial_delay": 0.1, "jitter": False}
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "flaky",
                "tests.runs.tasks:flaky",
                kwargs={"marker": f"{tmp_path}/flaky", "failures": 1},
                retry=retry,
            )
        ],
    )
    run = await trigger(client, owner, job["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    await eventually(
        lambda: value("baton_runs_finished_total", tenant=tenant, status="succeeded") == 1
    )
    attempts = "baton_task_attempts_finished_total"
    assert value(attempts, tenant=tenant, status="failed", reason="error") == 1
    assert value(attempts, tenant=tenant, status="succeeded", reason="none") == 1
    assert value("baton_task_duration_seconds_count", tenant=tenant, status="failed") == 1
    assert value("baton_task_start_latency_seconds_count", tenant=tenant) == 2  # each attempt


async def test_a_task_that_fails(
    client: AsyncClient, owner: Account, tenant: str, running_worker: Worker, tmp_path: object
) -> None:
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "doomed",
                "tests.runs.tasks:flaky",
                kwargs={"marker": f"{tmp_path}/doomed", "failures": 5},
            )
        ],
    )
    run = await trigger(client, owner, job["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "failed"
    await eventually(
        lambda: value("baton_runs_finished_total", tenant=tenant, status="failed") == 1
    )
    assert (
        value("baton_task_attempts_finished_total", tenant=tenant, status="failed", reason="error")
        == 1
    )


async def test_other_tenants_are_counted_under_other(quiet: PrivateBaton) -> None:
    TENANTS.configure([])
    before = value("baton_runs_finished_total", tenant="other", status="succeeded")
    owner = await create_tenant(quiet.client)
    job = await create_job(quiet.client, owner, [python_task("noop")])
    run = await trigger(quiet.client, owner, job["id"])
    assert (await wait_for_run(quiet.client, owner, run["id"]))["status"] == "succeeded"
    await eventually(
        lambda: value("baton_runs_finished_total", tenant="other", status="succeeded") == before + 1
    )
    assert value("baton_runs_finished_total", tenant=str(owner.tenant_id), status="succeeded") == 0


async def test_worker_heartbeats_and_busy_idle_slots(
    client: AsyncClient, owner: Account, running_worker: Worker, redis: Redis, tmp_path: Path
) -> None:
    capacity = value("baton_worker_slots_busy") + value("baton_worker_slots_idle")
    assert capacity >= running_worker.config.concurrency
    busy = value("baton_worker_slots_busy")
    marker = tmp_path / "go"  # the task runs until the test has seen it busy and beating
    job = await create_job(
        client,
        owner,
        [python_task("wait", "tests.runs.tasks:wait_for_file", kwargs={"path": str(marker)})],
    )
    run = await trigger(client, owner, job["id"])
    try:
        await wait_for_run(client, owner, run["id"], statuses={"running"})
        seen_running = time.time()
        assert value("baton_worker_slots_busy") == busy + 1
        assert value("baton_worker_slots_busy") + value("baton_worker_slots_idle") == capacity

        async def own_heartbeat() -> dict[str, Any]:
            raw = await redis.get(running_worker._heartbeat_key())
            return dict(json.loads(raw)) if raw else {}

        # This worker's own heartbeat, beaten after the task started, counts it running.
        beat = await eventually(
            own_heartbeat,
            lambda info: info.get("at", 0) > seen_running and info["running"] >= 1,
            what="a heartbeat of the busy worker",
        )
        assert beat["concurrency"] == running_worker.config.concurrency
    finally:
        marker.touch()
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    await eventually(lambda: value("baton_worker_slots_busy") == busy, what="the slot freed")


async def test_the_reconciler_counts_what_it_dispatches_again(
    quiet: PrivateBaton,
) -> None:
    """A dispatch Redis lost with its data (never started, silent since) is dispatched
    again and counted; running attempts are not (their workers report on)."""
    client, redis = quiet.client, quiet.app.state.redis
    owner = await create_tenant(client)
    before = value("baton_reconciler_redispatched_total")
    queue = f"nobody-{uuid.uuid4().hex[:8]}"  # no worker reads it: the dispatch waits there
    job = await create_job(client, owner, [python_task("stranded")], queue=queue)
    run = await trigger(client, owner, job["id"])

    def attempt_at_least(attempt: int) -> Callable[[dict[str, Any]], bool]:
        return lambda task: int(task["attempt"]) >= attempt

    await eventually(
        lambda: _task(client, owner, run["id"]), attempt_at_least(1), what="the first dispatch"
    )
    # As if Redis had come back empty: the message and the engine's epoch are gone.
    await redis.delete(keys.queue_stream(str(owner.tenant_id), queue), keys.engine_epoch())
    await eventually(
        lambda: value("baton_reconciler_redispatched_total") >= before + 1,
        timeout=30,
        what="the stranded dispatch counted as dispatched again",
    )
    await eventually(
        lambda: _task(client, owner, run["id"]), attempt_at_least(2), what="a second dispatch"
    )
    cancel = await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert cancel.status_code == 200, cancel.text
    assert value("baton_reconciler_redispatched_total") == before + 1  # this task alone


async def _task(client: AsyncClient, owner: Account, run_id: str) -> dict:
    response = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
    return dict(response.json()["tasks"][0])


async def test_scheduler_counts_ticks_and_firing_lateness(quiet: PrivateBaton) -> None:
    client = quiet.client
    owner = await create_tenant(client)
    fired = value("baton_schedule_ticks_total", outcome="fired")
    lateness = value("baton_scheduler_firing_lateness_seconds_count")
    slowest = value("baton_scheduler_firing_lateness_seconds_bucket", le="+Inf")
    job = await create_job(client, owner, [python_task("noop")], schedule={"cron": "* * * * * *"})
    settings = quiet.settings.model_copy(update={"scheduler_poll_seconds": 0.1})
    app = quiet.app
    scheduler = Scheduler(settings, app.state.sessionmaker, app.state.redis, name="sched-metrics")
    task = asyncio.create_task(scheduler.run())
    try:
        await eventually(
            lambda: value("baton_schedule_ticks_total", outcome="fired") >= fired + 2,
            timeout=20,
        )
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
        paused = await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
        assert paused.status_code == 200, paused.text
    listed = await client.get(f"/api/v1/runs?job_id={job['id']}&limit=100", headers=owner.headers)
    runs = listed.json()["items"]
    for run in runs:  # finished before the next test counts anything
        await wait_for_run(client, owner, run["id"])
    count = value("baton_schedule_ticks_total", outcome="fired") - fired
    assert count == len(runs) >= 2  # the only scheduler of the only schedule
    assert value("baton_scheduler_firing_lateness_seconds_count") == lateness + count
    assert value("baton_scheduler_firing_lateness_seconds_bucket", le="+Inf") == slowest + count


async def _fill(redis: Redis, tenant_id: str, queue: str, count: int) -> str:
    stream = keys.queue_stream(tenant_id, queue)
    await ensure_group(redis, stream, keys.WORKERS_GROUP)
    await redis.sadd(keys.queue_tenants(queue), tenant_id)
    for n in range(count):
        await redis.xadd(stream, {"m": f"message {n}"})
    return stream


async def test_queue_depth_and_pending_summed_over_tenants(
    redis: Redis, owner: Account, tenant: str, parked_queue: str
) -> None:
    mine = await _fill(redis, tenant, parked_queue, 3)
    await _fill(redis, str(uuid.uuid4()), parked_queue, 4)
    read = await redis.xreadgroup(keys.WORKERS_GROUP, "metrics-test", {mine: ">"}, count=2)
    gatherer = QueueGatherer(redis, max_queues=10_000)
    await gatherer.gather()
    assert value("baton_queue_depth", queue=parked_queue) == 5  # 7 dispatched, 2 read
    assert value("baton_queue_pending", queue=parked_queue) == 2
    assert value("baton_tenant_queue_depth", tenant=tenant) == 1
    entry_id = read[0][1][0][0]
    await redis.xack(mine, keys.WORKERS_GROUP, entry_id)
    await redis.xadd(mine, {"m": "one more"})
    await gatherer.gather()
    assert value("baton_queue_depth", queue=parked_queue) == 6
    assert value("baton_queue_pending", queue=parked_queue) == 1
    assert value("baton_tenant_queue_depth", tenant=tenant) == 2


async def test_queues_past_the_limit_are_counted_as_other(
    private_redis: Redis, owner: Account, parked_queue: str
) -> None:
    """In a Redis database of its own: a queue another test left registered in the shared
    one (its run dispatched after its teardown) would shift the limit's cut."""
    redis = private_redis
    await _fill(redis, str(owner.tenant_id), parked_queue, 2)
    queues = await QueueGatherer(redis).queues()
    assert queues[-1] == parked_queue  # "zz-..." sorts last
    await QueueGatherer(redis, max_queues=len(queues) - 1).gather()
    assert value("baton_queue_depth", queue=parked_queue) == 0  # no label of its own
    assert value("baton_queue_depth", queue="other") == 2
    await QueueGatherer(redis, max_queues=len(queues)).gather()
    assert value("baton_queue_depth", queue=parked_queue) == 2
    assert REGISTRY.get_sample_value("baton_queue_depth", {"queue": "other"}) is None


async def test_the_gatherer_resolves_configured_slugs(app: FastAPI, owner: Account) -> None:
    TENANTS.configure([owner.tenant_slug])
    try:
        assert TENANTS.label(owner.tenant_id) == "other"
        await QueueGatherer(app.state.redis, sessionmaker=app.state.sessionmaker).gather()
        assert TENANTS.label(owner.tenant_id) == owner.tenant_slug
        assert TENANTS.unresolved() == []
    finally:
        TENANTS.configure([])

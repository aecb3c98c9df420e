"""An engine that dies between a batch's commit and its acknowledgement loses nothing and
runs nothing twice: the batch is replayed (fenced), and the dispatches it committed are
published by whoever replays it, exactly once."""

from __future__ import annotations

import json
import time
import uuid

from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text

from backend.core.db import tenant_transaction
from backend.core.models import utcnow
from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.wire import keys
from kernel.wire.protocol import TaskMessage
from tests.engine.helpers import DiesAfterCommit, chain_until_the_engine_dies
from tests.fixtures.execution import running_in_task
from tests.fixtures.factories import create_tenant
from tests.fixtures.services import Services, claim_redis_db
from tests.fixtures.stack import flush_redis_db, private_baton
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, task_of, trigger, wait_for_run


async def test_an_engine_killed_between_a_batchs_commit_and_its_acks_loses_and_repeats_nothing(
    services: Services,
) -> None:
    async with private_baton(services, engine_class=DiesAfterCommit) as baton:
        client = baton.client
        owner, run = await chain_until_the_engine_dies(baton)
        redis = baton.app.state.redis
        assert await redis.keys(keys.engine_outbox(str(owner.tenant_id), "*")), "in the outbox"

        rescuer = Engine(baton.settings, baton.app.state.sessionmaker, redis, name="engine-rescuer")
        async with running_in_task(rescuer):
            done = await wait_for_run(client, owner, run["id"], timeout=30)
        assert done["status"] == "succeeded", done
        for name in ("first", "second", "third"):
            attempts = task_of(done, name)["attempts"]
            assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")], name
        assert await redis.keys(keys.engine_outbox(str(owner.tenant_id), "*")) == []


async def test_a_replayed_batch_whose_transaction_never_committed_publishes_nothing(
    services: Services,
) -> None:
    """An outbox written before a commit that never happened (its attempt is not the
    task's): the replay drops it and publishes nothing."""
    async with private_baton(services) as baton:
        client = baton.client
        engine = baton.engine
        owner = await create_tenant(client)
        job = await create_job(client, owner, [python_task("only")])
        run = await trigger(client, owner, job["id"])
        done = await wait_for_run(client, owner, run["id"], timeout=30)
        task = task_of(done, "only")
        redis = baton.app.state.redis
        tenant = str(owner.tenant_id)
        # The message of an attempt PostgreSQL never recorded (attempt 2 of a finished task).
        stale = TaskMessage(
            tenant_id=tenant,
            run_id=run["id"],
            task_run_id=task["id"],
            task_name="only",
            attempt=2,
            spec=python_task("only"),
        )
        outbox_key = keys.engine_outbox(tenant, "0-1")
        await redis.set(outbox_key, json.dumps([stale.to_json()]))
        queue = keys.queue_stream(tenant, "default")
        before = await redis.xlen(queue)
        await engine._recover_outbox(owner.tenant_id, outbox_key)
        assert await redis.exists(outbox_key) == 0
        assert await redis.xlen(queue) == before, "nothing was published"


async def test_after_redis_lost_its_data_the_engine_listens_again_before_judging_lost(
    services: Services,
) -> None:
    """Redis came back empty: the set of tenants whose events the engine reads went with
    it, so its events loop idled without failing while heartbeats went unread. The engine
    must not call attempts lost from that silence (it did, now and then, in
    tests/runs/test_recovery.py's Redis flush)."""
    async with private_baton(services) as baton:
        engine = baton.engine
        await eventually(engine.may_judge_lost, what="the engine listening long enough")
        await engine.reconcile_redis()
        assert not engine.may_judge_lost()
        assert engine.lost_before() is None


async def test_stranded_dispatches_wake_admission_only_once_queued_again(
    client: AsyncClient, app: FastAPI, engine_settings: Settings, services: Services
) -> None:
    """After Redis lost its data, the sweep queues a silent dispatch again and tells
    admission after that commit: told before it, admission could claim before the task
    was queued again, find nothing, drop the tenant from the due index and leave the task
    stranded (tests/metrics/test_domain.py's reconciler test saw it once). The engine here
    is not running and has a Redis database of its own, so only this sweep writes there."""
    owner = await create_tenant(client)
    job = await create_job(
        client, owner, [python_task("stranded")], queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    run = await trigger(client, owner, job["id"])
    tenant = owner.tenant_id
    async with tenant_transaction(app.state.sessionmaker, tenant) as session:
        # Dispatched an hour ago, silent since: its message went with Redis's data.
        await session.execute(
            text(
                "UPDATE task_runs SET dispatched_at = now() - interval '1 hour' "
                "WHERE tenant_id = :tenant AND run_id = :run"
            ),
            {"tenant": tenant, "run": run["id"]},
        )
    with claim_redis_db(services.redis_url) as redis_url:
        await flush_redis_db(redis_url)
        redis = Redis.from_url(redis_url)
        try:
            engine = Engine(engine_settings, app.state.sessionmaker, redis, name="engine-sweep")
            async with engine.tenant_transaction(tenant) as session:
                await engine._requeue_stranded(session, tenant, time.time() - 10, utcnow())
                assert await redis.zscore(keys.engine_due(), str(tenant)) is None
            assert await redis.zscore(keys.engine_due(), str(tenant)) is not None
        finally:
            await redis.aclose()
    async with tenant_transaction(app.state.sessionmaker, tenant) as session:
        waiting = await session.execute(
            text(
                "SELECT status, dispatched_at IS NULL "
                "OR dispatched_at > now() - interval '10 minutes' FROM task_runs "
                "WHERE run_id = :run"
            ),
            {"run": run["id"]},
        )
        # Queued again: the hour-old dispatch is gone (an engine another test left running
        # on the suite's Redis may have dispatched it anew since; that is its next life).
        assert [tuple(row) for row in waiting] == [("queued", True)]

"""The admission loop's dispatches go through the outbox too: an engine that dies (or loses
its Redis connection) between committing an admission and publishing it strands nothing,
and a publication whose answer was lost is never undone - no task runs twice for it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.engine import outbox
from backend.engine.loop import Engine
from kernel.wire import keys
from kernel.wire.protocol import TaskMessage
from tests.fixtures.factories import create_tenant
from tests.fixtures.services import Services
from tests.fixtures.stack import private_baton
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, task_of, trigger, wait_for_run


def _admission(outbox_key: str) -> bool:
    return ":engine:outbox:admit-" in outbox_key


class DiesBeforePublishingAnAdmission(Engine):
    """The first time its admission loop committed dispatches, stops dead before publishing
    them - what kill -9 leaves there: committed, the messages only in the outbox."""

    died = False

    async def _dispatch(
        self,
        tenant_id: object,
        messages: list[TaskMessage],
        hosted: frozenset[str],
        outbox_key: str,
        *,
        ack: Sequence[str] = (),
    ) -> None:
        if not self.died and _admission(outbox_key):
            self.died = True
            self.stop()
            return
        await super()._dispatch(tenant_id, messages, hosted, outbox_key, ack=ack)  # type: ignore[arg-type]


class LosesThePublicationsAnswer(Engine):
    """The first admission's publication reaches Redis, runs, and its answer is lost: the
    engine sees a broken connection and cannot tell that the messages went out."""

    lost_answers = 0

    async def _dispatch(
        self,
        tenant_id: object,
        messages: list[TaskMessage],
        hosted: frozenset[str],
        outbox_key: str,
        *,
        ack: Sequence[str] = (),
    ) -> None:
        await super()._dispatch(tenant_id, messages, hosted, outbox_key, ack=ack)  # type: ignore[arg-type]
        if not self.lost_answers and _admission(outbox_key):
            self.lost_answers += 1
            raise RedisConnectionError("Connection closed by server.")


@pytest.fixture(autouse=True)
def quick_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "STALE_SECONDS", 0.5)


async def test_an_engine_killed_between_an_admissions_commit_and_its_publication_strands_nothing(
    services: Services,
) -> None:
    async with private_baton(services, engine_class=DiesBeforePublishingAnAdmission) as baton:
        client = baton.client
        doomed = baton.engine
        assert isinstance(doomed, DiesBeforePublishingAnAdmission)
        owner = await create_tenant(client)
        job = await create_job(client, owner, [python_task("first"), python_task("second")])
        run = await trigger(client, owner, job["id"])
        await eventually(lambda: doomed.died, what="the engine dying after an admission")
        redis = baton.app.state.redis
        left = await redis.zrange(keys.engine_outboxes(), 0, -1)
        assert left and all(_admission(key) for key in left), "the admission is in the outbox"

        rescuer = Engine(baton.settings, baton.app.state.sessionmaker, redis, name="engine-rescuer")
        rescuing = asyncio.create_task(rescuer.run())
        try:
            done = await wait_for_run(client, owner, run["id"], timeout=30)
        finally:
            rescuer.stop()
            await asyncio.wait_for(rescuing, timeout=10)
        assert done["status"] == "succeeded", done
        for name in ("first", "second"):
            attempts = task_of(done, name)["attempts"]
            assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")], name
        assert await redis.zrange(keys.engine_outboxes(), 0, -1) == []


async def test_a_publication_whose_answer_was_lost_is_not_undone(services: Services) -> None:
    async with private_baton(services, engine_class=LosesThePublicationsAnswer) as baton:
        client = baton.client
        engine = baton.engine
        assert isinstance(engine, LosesThePublicationsAnswer)
        owner = await create_tenant(client)
        job = await create_job(client, owner, [python_task("only")])
        run = await trigger(client, owner, job["id"])
        done = await wait_for_run(client, owner, run["id"], timeout=30)
        assert engine.lost_answers == 1, "the fault was injected"
        assert done["status"] == "succeeded", done
        attempts = task_of(done, "only")["attempts"]
        # Undone, the dispatch would have gone out again as a second attempt of the task.
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")]
        assert await baton.app.state.redis.zrange(keys.engine_outboxes(), 0, -1) == []


async def test_the_sweep_drops_an_outbox_whose_transaction_never_committed(
    services: Services,
) -> None:
    async with private_baton(services) as baton:
        client = baton.client
        owner = await create_tenant(client)
        job = await create_job(client, owner, [python_task("only")])
        run = await trigger(client, owner, job["id"])
        done = await wait_for_run(client, owner, run["id"], timeout=30)
        tenant = str(owner.tenant_id)
        # The message of an attempt PostgreSQL never recorded (attempt 2 of a finished task).
        stale = TaskMessage(
            tenant_id=tenant,
            run_id=run["id"],
            task_run_id=task_of(done, "only")["id"],
            task_name="only",
            attempt=2,
            spec=python_task("only"),
        )
        redis = baton.app.state.redis
        outbox_key = keys.engine_outbox(tenant, "admit-rolled-back")
        await redis.set(outbox_key, json.dumps([stale.to_json()]))
        await redis.zadd(keys.engine_outboxes(), {outbox_key: time.time() - 60})
        queue = keys.queue_stream(tenant, "default")
        before = await redis.xlen(queue)
        await baton.engine.recover_stale_outboxes()  # (or the engine's own sweep did)
        assert await redis.exists(outbox_key) == 0
        assert await redis.zrange(keys.engine_outboxes(), 0, -1) == []
        assert await redis.xlen(queue) == before, "nothing was published"

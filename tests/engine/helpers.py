"""For the engine's tests: engines that fail on purpose, and the worker's side played by
the test (waiting for a task's dispatch, the events a worker reports)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.engine.admission import Admission
from backend.engine.events import Effects
from backend.engine.loop import Engine
from kernel.wire.protocol import TaskEvent
from tests.fixtures.database import one_row
from tests.fixtures.factories import Account, create_tenant
from tests.fixtures.stack import PrivateBaton
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger

CHAIN = [
    python_task("first"),
    python_task("second", depends_on=["first"]),
    python_task("third", depends_on=["second"]),
]


async def chain_until_the_engine_dies(baton: PrivateBaton) -> tuple[Account, dict[str, Any]]:
    """On a stack whose engine is a :class:`DiesAfterCommit`: a new tenant triggers a run
    of :data:`CHAIN`, and the engine dies after the first batch that dispatched successors.
    The tenant and the run."""
    doomed = baton.engine
    assert isinstance(doomed, DiesAfterCommit)
    owner = await create_tenant(baton.client)
    job = await create_job(baton.client, owner, CHAIN)
    run = await trigger(baton.client, owner, job["id"])
    await eventually(lambda: doomed.died, what="the engine dying after a commit")
    return owner, run


async def dispatched(owner_engine: AsyncEngine, run_id: str, attempt: int | None = None) -> Any:
    """Wait until the run's (only top-level) task has been dispatched - as ``attempt`` when
    given; its row (``id``, ``attempt``, ``dispatched_at``)."""
    return await eventually(
        lambda: one_row(
            owner_engine,
            "SELECT id, attempt, dispatched_at FROM task_runs "
            "WHERE run_id = :run AND parent_id IS NULL",
            run=uuid.UUID(run_id),
        ),
        lambda row: row.dispatched_at is not None and (attempt is None or row.attempt == attempt),
        what="the dispatch" if attempt is None else f"the dispatch of attempt {attempt}",
    )


async def dispatched_unserved(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> tuple[dict[str, Any], Any]:
    """A one-task run on a queue no worker reads (the test plays the worker), once the
    engine dispatched its task: the run, and the task's row (as :func:`dispatched`)."""
    job = await create_job(
        client, owner, [python_task("only")], queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    run = await trigger(client, owner, job["id"])
    return run, await dispatched(owner_engine, run["id"])


def start_and_finish(
    task: Any, run_id: str, output: Any = None, *, seconds: float = 0.01
) -> list[TaskEvent]:
    """What a worker reports for a dispatched ``task`` (a row of :func:`dispatched`) that
    ran ``seconds`` and succeeded with ``output``."""
    now = time.time()
    common = {"task_run_id": str(task.id), "run_id": run_id, "attempt": task.attempt}
    return [
        TaskEvent(kind="started", worker="w", ts=now, **common),
        TaskEvent(
            kind="finished",
            worker="w",
            ts=now + seconds,
            result={"status": "succeeded", "output": output},
            **common,
        ),
    ]


class DiesAfterCommit(Engine):
    """The first time a committed batch dispatched successors, stops dead before
    publishing them and acknowledging the batch - what kill -9 leaves at that point: the
    transaction committed, the events pending, the dispatches only in the outbox."""

    died = False

    async def _after_commit(
        self,
        tenant_id: uuid.UUID,
        stream: str,
        entry_ids: list[str],
        outbox_key: str,
        admission: Admission | None,
        hosted: dict[str, frozenset[str]],
        effects: Effects,
    ) -> None:
        if not self.died and admission is not None and admission.messages:
            self.died = True
            self.stop()
            return
        await super()._after_commit(
            tenant_id, stream, entry_ids, outbox_key, admission, hosted, effects
        )

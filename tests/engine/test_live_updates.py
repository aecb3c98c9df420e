"""Live updates (SSE) show every state change even when a worker's "started" and "finished"
reach the engine in one batch: the intermediate "running" is not folded away."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import tenant_transaction
from backend.engine.events import apply_events
from backend.engine.loop import Engine
from kernel.dag.plan import PLANS
from tests.engine.helpers import dispatched_unserved, start_and_finish
from tests.fixtures.factories import Account


async def test_a_start_and_finish_in_one_batch_publish_running_then_succeeded(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    owner_engine: AsyncEngine,
) -> None:
    run, task = await dispatched_unserved(client, owner, owner_engine)  # we play the worker
    # Reported together, at the same instant.
    events = start_and_finish(task, run["id"], seconds=0)
    async with tenant_transaction(app.state.sessionmaker, owner.tenant_id) as session:
        effects = await apply_events(session, owner.tenant_id, events, PLANS)
    seen = [(u["type"], u["status"]) for u in effects.updates]
    assert seen == [
        ("task", "running"),
        ("run", "running"),
        ("task", "succeeded"),
        ("run", "succeeded"),
    ], seen

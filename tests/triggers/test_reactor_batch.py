"""The reactor reads a batch's jobs, notification rules and trigger edges once a batch of
finished runs, not once a run, and a pass kicked for finished runs reads nothing else: the
statements it sends for a tenant are counted with SQLAlchemy's ``before_cursor_execute`` on
the app's engine, those of the reactor's loop only, and bounded by the number of batches
(each batch ends with one ``DELETE`` of its outbox rows)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from backend.core.settings import Settings
from backend.triggers.reactor import EVERYTHING, FINISHED, REFUSED, Reactor
from tests.fixtures.factories import Account
from tests.fixtures.statements import Sent, from_loop, sent_statements
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, wait_for_run

RUNS = 24


async def test_a_batch_of_finished_runs_looks_its_jobs_up_once(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_reactor: Reactor,
    running_worker: object,
) -> None:
    job = await create_job(client, owner, [python_task("quick")])
    tenant = str(owner.tenant_id)
    with sent_statements(app.state.engine) as sent:
        response = await client.post(
            f"/api/v1/jobs/{job['id']}/runs/batch",
            json={"runs": [{} for _ in range(RUNS)]},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        runs = response.json()["runs"]
        assert len(runs) == RUNS
        for run in runs:
            assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
        await eventually(  # every finished run's outbox row consumed
            lambda: _outbox_rows(app, tenant),
            lambda left: left == 0 and _batches(_reactor_statements(sent, tenant)) > 0,
            what="the reactor taking every finished run",
        )
    seen = _reactor_statements(sent, tenant)
    taken = _batches(seen)
    assert 1 <= taken < RUNS  # several runs per batch: what the bound below is about
    lookups = {
        "jobs": [s for s in seen if s.startswith("SELECT jobs.")],
        "rules": [s for s in seen if "FROM notification_rules" in s],
        "edges": [s for s in seen if "-> 'triggers'" in s],
    }
    for name, found in lookups.items():
        assert 1 <= len(found) <= taken, (name, len(found), taken)


async def test_a_pass_kicked_for_finished_runs_reads_only_their_outbox(
    client: AsyncClient, owner: Account, app: FastAPI, engine_settings: Settings
) -> None:
    """A tenant kicked for finished runs is not asked for refusals (nor one kicked for
    refusals for finished runs), and its notifications are sent only when the pass queued
    some (each cost a transaction a run); a sweep still reads everything. The statements
    counted are this pass's own (the session's reactor may be running beside it)."""
    await create_job(client, owner, [python_task("quick")])
    reactor = Reactor(app.state.sessionmaker, app.state.redis, engine_settings)
    with sent_statements(app.state.engine) as sent:
        await reactor.serve_tenant(owner.tenant_id, {FINISHED}, sweeping=False)
    kicked = [s.statement for s in sent if s.task is asyncio.current_task()]
    assert [s for s in kicked if "FROM run_finish_outbox" in s]
    assert not [s for s in kicked if "run_refusal_outbox" in s], kicked
    assert not [s for s in kicked if "notification_deliveries" in s], kicked

    with sent_statements(app.state.engine) as sent:
        await reactor.serve_tenant(owner.tenant_id, {REFUSED}, sweeping=False)
    refused = [s.statement for s in sent if s.task is asyncio.current_task()]
    assert [s for s in refused if "FROM run_refusal_outbox" in s]
    assert not [s for s in refused if "run_finish_outbox" in s], refused

    with sent_statements(app.state.engine) as sent:
        await reactor.serve_tenant(owner.tenant_id, EVERYTHING, sweeping=True)
    swept = [s.statement for s in sent if s.task is asyncio.current_task()]
    for table in ("run_finish_outbox", "run_refusal_outbox", "notification_deliveries"):
        assert [s for s in swept if f"FROM {table}" in s], (table, swept)


def _reactor_statements(sent: list[Sent], tenant: str) -> list[str]:
    """The statements the reactor's loop sent for ``tenant``."""
    return [s.statement for s in sent if from_loop(s, "Reactor.run") and s.mentions(tenant)]


def _batches(statements: list[str]) -> int:
    """The batches taken: each ends with one ``DELETE`` of its outbox rows."""
    return sum(s.startswith("DELETE FROM run_finish_outbox") for s in statements)


async def _outbox_rows(app: FastAPI, tenant: str) -> int:
    async with app.state.engine.begin() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant})
        return int(await conn.scalar(text("SELECT count(*) FROM run_finish_outbox")) or 0)

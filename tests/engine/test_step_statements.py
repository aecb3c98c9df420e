"""The statements the engine sends to PostgreSQL per chain step: its round-trip budget, kept.

Counted on the app's engine (SQLAlchemy's statements and the raw ones the engine sends on
its transactions' connections: tests/fixtures/statements.py), for the statements of the
engine's events loop only (BEGIN, with the tenant scope, and COMMIT are not counted). A step is
one ``finished`` event applied, with its successor admitted in the same transaction; a
``started`` that reaches the engine on its own adds a small transaction of its own, so
the figure is an average and the bound a ceiling, not an exact count.
"""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient

from backend.engine.loop import Engine
from tests.fixtures.factories import Account
from tests.fixtures.statements import from_loop, sent_statements
from tests.runs.factories import create_job, python_task, trigger, wait_for_run

CHAIN = 12


async def test_a_chain_step_costs_a_bounded_number_of_statements_whatever_the_runs_size(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    running_engine: Engine,
    running_worker: object,
) -> None:
    tasks = [python_task("t0")] + [
        python_task(f"t{i}", depends_on=[f"t{i - 1}"]) for i in range(1, CHAIN)
    ]
    job = await create_job(client, owner, tasks)
    with sent_statements(app.state.engine) as sent:
        run = await trigger(client, owner, job["id"])
        done = await wait_for_run(client, owner, run["id"], timeout=60)
    seen = [s.statement for s in sent if from_loop(s, "_events_loop")]
    assert done["status"] == "succeeded", done
    per_task = len(seen) / CHAIN
    # One transaction per step (the started that comes just before its finished joins it,
    # Engine._linger): runs locked, their top-level tasks, the attempts, the task runs
    # written (the runs too on the first and last step), the attempts upserted, the
    # admission lock, the in-flight count, and one claim that also inserts the next
    # attempt and says when the tenant is next due - 8. A start applied on its own (the
    # machine was too slow for the linger) adds 5: the ceiling leaves room for most.
    assert per_task <= 13, (per_task, seen)
    # No unit-of-work flush of task runs or attempts: the set-based writer sends them.
    assert not any(s.startswith(("UPDATE task_attempts SET", "UPDATE task_runs SET")) for s in seen)

"""The statements a trigger sends to PostgreSQL: its round-trip budget, kept.

Counted with SQLAlchemy's ``before_cursor_execute`` on the app's engine (BEGIN, COMMIT and
a pool ping are not cursor executions; docs/architecture.md counts them). The tenant scope
is not one either: ``set_config`` travels with the transaction's ``BEGIN``
(``core.db.scope_to_tenant``, tested in tests/core/test_db_scope.py). The audit
sealer, kicked after the commit, runs statements of its own on the same engine, in tasks of
its own: only the statements of the request's task are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.fixtures.statements import sent_statements
from tests.runs.factories import create_job, python_task, trigger


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The statements of the request (the task that reads the caller's membership)."""
    kept: list[str] = []
    with sent_statements(app.state.engine) as sent:
        yield kept
    request = next(s.task for s in sent if "FROM memberships" in s.statement)
    kept.extend(s.statement for s in sent if s.task is request)


async def test_a_trigger_sends_three_statements(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    """After the BEGIN that sets the tenant scope: the caller's membership, the job, then one
    statement for the runs, their task runs and the audit event (no chain lock, no
    chain-head read)."""
    tasks = [python_task("a"), python_task("b", depends_on=["a"]), python_task("c")]
    job = await create_job(client, owner, tasks)
    await trigger(client, owner, job["id"])  # the plan is compiled and cached once
    with statements(app) as seen:
        await trigger(client, owner, job["id"])
    assert len(seen) == 3, seen
    assert not any("audit_events" in s or "advisory" in s or "set_config" in s for s in seen)
    assert "FROM memberships" in seen[0]
    assert "FROM jobs" in seen[1]
    assert seen[2].startswith("WITH new_runs AS ( INSERT INTO runs")


async def test_a_batch_of_runs_is_one_statement_too(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    job = await create_job(client, owner, [python_task("a"), python_task("b")])
    await trigger(client, owner, job["id"])
    body = {"runs": [{"params": {"n": i}} for i in range(50)]}
    with statements(app) as seen:
        response = await client.post(
            f"/api/v1/jobs/{job['id']}/runs/batch", json=body, headers=owner.headers
        )
    assert response.json()["created"] == 50
    inserts = [s for s in seen if "INSERT" in s]
    assert len(inserts) == 1 and inserts[0].startswith("WITH new_runs AS"), seen

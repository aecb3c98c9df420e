"""The run detail is one snapshot: what an engine commits while it is read shows whole or
not at all."""

from __future__ import annotations

import contextvars
from typing import Any

from httpx import AsyncClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, run_detail, task_of, trigger, wait_for_run

# Set while this test's own request runs: the hook below ignores every other statement
# (the in-process engine and worker share the app's database engine).
_READING = contextvars.ContextVar("reading_run_detail", default=False)


async def test_a_commit_landing_while_the_detail_is_read_shows_whole_or_not_at_all(
    client: AsyncClient,
    owner: Account,
    app: Any,
    owner_engine: AsyncEngine,
    running_worker: object,
) -> None:
    """As if an engine retried the task the moment its row had been read: a second attempt
    row and the task's attempt number, committed together between the request's reads. A
    detail read in two statements showed the new attempt beside the old task row (attempt
    1 with two attempts listed); one snapshot shows both or neither."""
    job = await create_job(client, owner, [python_task("a")])
    run = await trigger(client, owner, job["id"])
    finished = await wait_for_run(client, owner, run["id"])
    assert task_of(finished, "a")["attempt"] == 1 and len(task_of(finished, "a")["attempts"]) == 1
    task_id = task_of(finished, "a")["id"]
    committed: list[str] = []

    async def commit_a_retry() -> None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO task_attempts (tenant_id, task_run_id, attempt, run_id, status) "
                    "SELECT tenant_id, id, 2, run_id, 'dispatched' FROM task_runs WHERE id = :id"
                ),
                {"id": task_id},
            )
            await conn.execute(
                text("UPDATE task_runs SET attempt = 2 WHERE id = :id"), {"id": task_id}
            )

    def after_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if _READING.get() and not committed and "task_runs" in statement:
            committed.append(statement)
            await_only(commit_a_retry())  # inside the request, between its statements

    engine = app.state.engine.sync_engine
    event.listen(engine, "after_cursor_execute", after_execute)
    token = _READING.set(True)
    try:
        detail = await run_detail(client, owner, run["id"])
    finally:
        _READING.reset(token)
        event.remove(engine, "after_cursor_execute", after_execute)
    assert committed, "the retry was never committed during the read"
    shown = task_of(detail, "a")
    assert [a["attempt"] for a in shown["attempts"]] == list(range(1, shown["attempt"] + 1))
    after = task_of(await run_detail(client, owner, run["id"]), "a")  # the commit did land
    assert after["attempt"] == 2 and [a["attempt"] for a in after["attempts"]] == [1, 2]

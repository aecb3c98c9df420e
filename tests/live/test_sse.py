"""Server-Sent Events through a real HTTP server: state changes, resume, log tails."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Any

from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, shell_task, task_of, trigger, wait_for_run


async def read_events(
    base: str,
    path: str,
    headers: dict[str, str],
    *,
    until: Any,
    seconds: float = 15,
    connected: asyncio.Event | None = None,
    into: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Collect SSE frames until ``until(frames)`` is true or ``seconds`` pass.

    ``connected`` is set at the stream's first line (``retry:``), sent once the server has
    fixed where the stream starts: what happens after that is in the stream. Frames are
    appended to ``into`` as they come, when given (a reader cancelled midway keeps them).
    """
    frames: list[dict[str, Any]] = into if into is not None else []
    async with AsyncClient(base_url=base, timeout=seconds) as http:
        try:
            async with asyncio.timeout(seconds):
                async with http.stream("GET", path, headers=headers) as response:
                    assert response.status_code == 200, await response.aread()
                    frame: dict[str, Any] = {}
                    async for line in response.aiter_lines():
                        if connected is not None and line.startswith("retry:"):
                            connected.set()
                        if line == "":
                            if "data" in frame:
                                frames.append(frame)
                                if until(frames):
                                    return frames
                            frame = {}
                        elif not line.startswith(":") and ":" in line:
                            key, _, value = line.partition(":")
                            frame[key] = value.strip()
        except TimeoutError:
            pass
    return frames


def run_done(run_id: str) -> Any:
    def check(frames: list[dict[str, Any]]) -> bool:
        return any(
            f.get("event") == "run" and json.loads(f["data"])["status"] in ("succeeded", "failed")
            for f in frames
        )

    del run_id
    return check


async def test_every_state_change_arrives_in_order_and_resumes_after_reconnect(
    client: AsyncClient, owner: Account, server: str, running_worker: object
) -> None:
    job = await create_job(client, owner, [python_task("a"), python_task("b", depends_on=["a"])])
    connected = asyncio.Event()
    reader = asyncio.create_task(
        read_events(
            server,
            f"/api/v1/events?job_id={job['id']}",
            owner.headers,
            until=run_done(""),
            connected=connected,
        )
    )
    await asyncio.wait_for(connected.wait(), timeout=10)
    run = await trigger(client, owner, job["id"])
    frames = await reader
    updates = [json.loads(f["data"]) for f in frames]
    assert all(u["run_id"] == run["id"] for u in updates)
    run_statuses = [u["status"] for u in updates if u["type"] == "run"]
    assert run_statuses == ["queued", "running", "succeeded"]
    for name in ("a", "b"):
        seen = [u["status"] for u in updates if u["type"] == "task" and u["task"] == name]
        assert seen[-1] == "succeeded" and "running" in seen
        assert seen.index("running") < seen.index("succeeded")
    b_started = next(i for i, u in enumerate(updates) if u.get("task") == "b")
    a_done = next(
        i for i, u in enumerate(updates) if u.get("task") == "a" and u["status"] == "succeeded"
    )
    assert a_done <= b_started
    ids = [f["id"] for f in frames]
    assert len(ids) == len(set(ids))

    # Reconnect after the second event: the rest arrives, nothing lost, nothing twice.
    resumed = await read_events(
        server,
        f"/api/v1/events?run_id={run['id']}",
        {**owner.headers, "Last-Event-ID": ids[1]},
        until=lambda got: len(got) >= len(frames) - 2,
        seconds=5,
    )
    assert [f["id"] for f in resumed] == ids[2:]


async def test_no_event_of_another_tenant_ever_arrives(
    client: AsyncClient, owner: Account, stranger: Account, server: str, running_worker: object
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    own_job = await create_job(client, stranger, [python_task("mine")])

    def own_run_done(frames: list[dict[str, Any]]) -> bool:
        return any(
            (u := json.loads(f["data"]))["type"] == "run"
            and u["job_id"] == own_job["id"]
            and u["status"] == "succeeded"
            for f in frames
        )

    connected, filtered_connected = asyncio.Event(), asyncio.Event()
    filtered: list[dict[str, Any]] = []
    spy = asyncio.create_task(
        read_events(
            server, "/api/v1/events", stranger.headers, until=own_run_done, connected=connected
        )
    )
    spy_filtered = asyncio.create_task(
        read_events(
            server,
            f"/api/v1/events?job_id={job['id']}",
            stranger.headers,
            until=lambda f: bool(f),
            connected=filtered_connected,
            into=filtered,
        )
    )
    await asyncio.wait_for(connected.wait(), timeout=10)
    await asyncio.wait_for(filtered_connected.wait(), timeout=10)
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"])
    # Only after the owner's run is over: the stranger's own run, whose events the spy must
    # see. That proves its stream was live and delivering while the owner's events were new.
    await trigger(client, stranger, own_job["id"])
    seen = await spy
    spy_filtered.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await spy_filtered
    assert own_run_done(seen), "the spy's stream never delivered its own tenant's run"
    assert {json.loads(f["data"])["job_id"] for f in seen} == {own_job["id"]}
    assert filtered == []


async def test_log_lines_stream_while_a_shell_task_prints(
    client: AsyncClient, owner: Account, stranger: Account, server: str, running_worker: object
) -> None:
    job = await create_job(
        client, owner, [shell_task("talk", "echo one; sleep 1; echo two; sleep 1; echo three")]
    )
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"], statuses={"running", "succeeded"})
    path = f"/api/v1/runs/{run['id']}/logs/stream?task=talk"
    frames = await read_events(
        server, path, owner.headers, until=lambda f: f[-1].get("event") == "end"
    )
    lines = [json.loads(f["data"]) for f in frames if f.get("event") == "log"]
    assert [line["line"] for line in lines] == ["one", "two", "three"]
    assert frames[-1]["event"] == "end"
    done = await wait_for_run(client, owner, run["id"])
    finished = datetime.fromisoformat(task_of(done, "talk")["finished_at"])
    assert datetime.fromisoformat(lines[0]["logged_at"]) < finished
    async with AsyncClient(base_url=server, timeout=5) as http:
        assert_error(await http.get(path, headers=stranger.headers), 404, "not_found")
        assert_error(await http.get(path), 401, "unauthenticated")
        missing = f"/api/v1/runs/{run['id']}/logs/stream?task=nope"
        assert_error(await http.get(missing, headers=owner.headers), 404, "not_found")
        bad = await http.get("/api/v1/events", headers={**owner.headers, "Last-Event-ID": "x"})
        assert_error(bad, 422, "validation_failed")

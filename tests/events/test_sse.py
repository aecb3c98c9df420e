"""Server-Sent Events through a real HTTP server: state changes, resume, log tails."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from httpx import AsyncClient

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
) -> list[dict[str, Any]]:
    """Collect SSE frames until ``until(frames)`` is true or ``seconds`` pass.

    ``connected`` is set at the stream's first line (``retry:``), sent once the server has
    fixed where the stream starts: what happens after that is in the stream.
    """
    frames: list[dict[str, Any]] = []
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
    spy = asyncio.create_task(
        read_events(server, "/api/v1/events", stranger.headers, until=lambda f: bool(f), seconds=3)
    )
    spy_filtered = asyncio.create_task(
        read_events(
            server,
            f"/api/v1/events?job_id={job['id']}",
            stranger.headers,
            until=lambda f: bool(f),
            seconds=3,
        )
    )
    await asyncio.sleep(0.3)
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"])
    assert await spy == [] and await spy_filtered == []


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
        assert (await http.get(path, headers=stranger.headers)).status_code == 404
        assert (await http.get(path)).status_code == 401
        missing = f"/api/v1/runs/{run['id']}/logs/stream?task=nope"
        assert (await http.get(missing, headers=owner.headers)).status_code == 404
        bad = await http.get("/api/v1/events", headers={**owner.headers, "Last-Event-ID": "x"})
        assert bad.status_code == 422

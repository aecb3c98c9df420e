"""The built-in container template runs to success on a real Docker engine.

The engine is the session's ``docker_engine`` (tests/fixtures/docker_engine.py: an engine
that answers, or a dockerd of the session's own, holding a BusyBox image imported without a
registry); the test skips, with its reason, only when no engine can run here. The job runs
through the real API, engine and a worker of its own on a queue of its own that allows
docker tasks (confined, as on the shared pool) and reaches the engine the way a deployed
worker does: ``docker.from_env()``, so ``DOCKER_HOST`` names the session's dockerd.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.secrets import TransitKeys
from tests.fixtures.docker_engine import DockerEngine
from tests.fixtures.execution import worker_config
from tests.fixtures.factories import Account
from tests.templates.helpers import run_template
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker


@pytest.fixture
async def docker_queue(
    app: FastAPI,
    running_engine: Engine,
    engine_settings: Settings,
    docker_engine: DockerEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[str, str]]:
    """A queue of its own and the name of the one worker reading it (docker tasks only)."""
    if docker_engine.base_url:  # the session's own dockerd: the worker must find it
        monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
        monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
        monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    queue = f"docker-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        app.state.redis,
        worker_config(
            name=f"worker-{queue}",
            queues=(queue,),
            policy=ExecutorPolicy(allow_shell=False, allow_docker=True, docker_confined=True),
            transit_keys=TransitKeys(dict(engine_settings.worker_transit_keys)),
        ),
    )
    task = asyncio.create_task(worker.run())
    yield queue, worker.config.name
    worker.stop()
    await asyncio.wait_for(task, timeout=10)


async def test_docker_template_runs(
    client: AsyncClient,
    owner: Account,
    docker_engine: DockerEngine,
    docker_queue: tuple[str, str],
) -> None:
    queue, worker_name = docker_queue
    # Shell arithmetic, so the line can only come from the command running in the image.
    args = ["sh", "-c", "echo container says $((6 * 7))"]
    run = await run_template(
        client,
        owner,
        "docker-container",
        {"image": docker_engine.image, "args": args, "queue": queue},
    )
    assert run["status"] == "succeeded", run
    (task,) = run["tasks"]
    assert task["status"] == "succeeded", task
    assert [a["worker"] for a in task["attempts"]] == [worker_name]
    logs = await client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers)
    assert logs.status_code == 200, logs.text
    lines = [(item["task"], item["stream"], item["line"]) for item in logs.json()["items"]]
    assert lines == [("container", "stdout", "container says 42")]

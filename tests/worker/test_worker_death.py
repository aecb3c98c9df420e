"""A worker's tasks die with it: SIGKILL a real ``baton worker`` mid-task, nothing survives.

Before, shell children ran in a session of their own and outlived a SIGKILLed worker: their
results were dropped and, with retries, the command ran twice. The task here also starts a
process that double-forks into a new session (``setsid``), which no process-group kill
reaches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import AsyncClient

from backend.core.settings import Settings
from tests.fixtures.docker_engine import DockerEngine
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, shell_task, trigger
from tests.worker.processes import running, sleeper
from worker.sandbox import probe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def worker_process(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``baton worker`` subprocess serving a queue of its own; the sandbox as parametrized."""
    if request.param == "sandbox" and (reason := await probe.unavailable_reason()):
        pytest.skip(f"the sandbox is unavailable here: {reason}")
    queue = f"death-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BATON_ENVIRONMENT": "test",
        "BATON_REDIS_URL": settings.redis_url or "",
        "BATON_WORKER_ALLOW_SHELL": "true",
        "BATON_WORKER_SANDBOX": "true" if request.param == "sandbox" else "false",
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from backend.cli import app; app()", "worker", "--queue", queue],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield queue, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


@pytest.mark.parametrize("worker_process", ["sandbox", "host"], indirect=True)
async def test_sigkilled_worker_leaves_no_task_process(
    request: pytest.FixtureRequest,
    client: AsyncClient,
    owner: Account,
    running_engine: object,
    worker_process: tuple[str, subprocess.Popen[bytes]],
) -> None:
    queue, worker = worker_process
    escaper, escaper_marker = sleeper()
    child, child_marker = sleeper()
    command = f'setsid sh -c "{escaper} &"; {child}'
    job = await create_job(client, owner, [shell_task("long", command, queue=queue)])
    await trigger(client, owner, job["id"])

    both = (escaper_marker, child_marker)
    await eventually(
        lambda: all(running(marker) for marker in both), timeout=60, what="the task's processes run"
    )
    if "sandbox" in request.node.name:
        assert children_named(worker.pid, "slirp4netns")
    helpers = children_named(worker.pid, "slirp4netns")  # the sandbox's network, if any
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    await eventually(
        lambda: not any(running(marker) for marker in both),
        what="the task's processes die with the worker",
    )
    await eventually(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers),
        what="the sandbox's slirp4netns dies with the worker",
    )


async def test_a_sigkilled_workers_container_is_removed(
    client: AsyncClient,
    owner: Account,
    settings: Settings,
    running_engine: object,
    docker_engine: DockerEngine,
    tmp_path: Path,
) -> None:
    """A container is the Docker engine's child, not the worker's: its guard process
    (worker/executors/container_guard.py) removes it when the worker dies."""
    queue = f"death-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BATON_ENVIRONMENT": "test",
        "BATON_REDIS_URL": settings.redis_url or "",
        "BATON_WORKER_ALLOW_DOCKER": "true",
    }
    if docker_engine.base_url:
        env["DOCKER_HOST"] = docker_engine.base_url
    task = {"name": "long", "type": "docker", "image": docker_engine.image, "queue": queue}
    job = await create_job(client, owner, [{**task, "command": ["sleep", "600"]}])
    docker = docker_engine.client()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-c", "from backend.cli import app; app()", "worker", "--queue", queue],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        run = await trigger(client, owner, job["id"])
        label = {"label": f"baton.run_id={run['id']}"}
        await eventually(
            lambda: [
                c
                for c in docker.containers.list(filters=label, ignore_removed=True)
                if c.status == "running"
            ],
            timeout=60,
            what="the task's container running",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # ignore_removed: the guard may remove the container between docker-py's listing
        # and its inspection of each listed container (a 404 from the inspection).
        await eventually(
            lambda: docker.containers.list(all=True, filters=label, ignore_removed=True) == [],
            timeout=60,
            what="the container removed after its worker died",
        )
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        log.close()
        for leftover in docker.containers.list(
            all=True,
            filters={"label": f"baton.tenant_id={owner.tenant_id}"},
            ignore_removed=True,
        ):
            leftover.remove(force=True)
        docker.close()


def children_named(parent: int, name: str) -> list[int]:
    """Pids of ``parent``'s children whose command is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.find("(") + 1 : stat.rfind(")")]
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if ppid == parent and command == name:
            found.append(int(entry.name))
    return found

"""``baton-worker`` with the API's packages unimportable runs real tasks of a real Baton.

Each test starts ``baton-worker`` in a process of its own behind an import blocker
(tests/fixtures/worker_alone.py: every module the ``api`` extra brings - FastAPI, Starlette,
SQLAlchemy, SQLModel, asyncpg, pydantic, pydantic-settings, Alembic, Jinja2, typer ... -
and ``backend`` itself raise ``ModuleNotFoundError``), as on a machine where only
``pip install 'baton[worker]'`` was run. The session's API and engine dispatch a task to it;
it must run it, report it, and stop cleanly on SIGTERM. Any import of those packages, at
start or while running a task, makes it fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import tomllib
from pathlib import Path

from httpx import AsyncClient
from redis.asyncio import Redis

from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.wire import keys
from tests.fixtures.execution import bare_env, start_worker_process, stop_worker_process
from tests.fixtures.factories import Account
from tests.fixtures.worker_alone import ROOT, worker_alone
from tests.runs.factories import (
    create_job,
    python_task,
    shell_task,
    task_of,
    trigger,
    wait_for_run,
)
from tests.secrets.helpers import create_secret, secret_name, secret_value
from tests.workers.factories import create_worker_credential, echo_on, unique_queue


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return start_worker_process(worker_alone(*args), env, cwd)


async def test_a_tenant_hosted_worker_alone_runs_a_task_with_only_its_credential(
    client: AsyncClient,
    owner: Account,
    redis: Redis,
    running_engine: Engine,
    tmp_path: Path,
) -> None:
    queue = unique_queue()
    created = await create_worker_credential(client, owner, queue)
    process = _start(
        ["--name", "box-alone"],
        bare_env(
            tmp_path,
            BATON_ENVIRONMENT="production",
            BATON_WORKER_CREDENTIAL=created["credential"],
        ),
        tmp_path,
    )
    try:
        finished = await echo_on(client, owner, queue)
    finally:
        output = await stop_worker_process(process)
    assert finished["status"] == "succeeded", (finished, output)
    (task,) = finished["tasks"]
    assert (task["output"], task["worker"]) == (42, "box-alone")
    assert process.returncode == 0, output
    assert "worker.started" in output and "worker.stopped" in output
    assert "not installed with the worker" not in output
    # The shared pool never discovered this queue of the tenant.
    assert not await redis.sismember(keys.queue_tenants(queue), str(owner.tenant_id))


async def test_a_shared_pool_worker_alone_opens_the_secrets_its_engine_sealed(
    client: AsyncClient,
    owner: Account,
    settings: Settings,
    engine_settings: Settings,
    running_engine: Engine,
    tmp_path: Path,
) -> None:
    assert settings.redis_url
    queue = unique_queue()
    name, value = secret_name(), secret_value()
    await create_secret(client, owner, name, value)
    process = _start(
        ["--queue", queue, "--concurrency", "2"],
        bare_env(
            tmp_path,
            BATON_ENVIRONMENT="test",
            BATON_REDIS_URL=settings.redis_url,
            BATON_WORKER_TRANSIT_KEY=engine_settings.worker_transit_key,
            BATON_WORKER_ALLOW_SHELL="true",
            # The shell task compares a value in its environment: no sandbox needed here
            # (the sandbox has its own tests).
            BATON_WORKER_SANDBOX="false",
            BATON_HEARTBEAT_SECONDS="0.5",
        ),
        tmp_path,
    )
    try:
        digest = hashlib.sha256(value.encode()).hexdigest()  # the spec holds no value
        command = f'test "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = "{digest}"'
        job = await create_job(
            client,
            owner,
            [shell_task("uses-secret", command, env={"TOKEN": f"${{{{ secrets.{name} }}}}"})],
            queue=queue,
        )
        run = await trigger(client, owner, job["id"])
        finished = await wait_for_run(client, owner, run["id"], timeout=60)
    finally:
        output = await stop_worker_process(process)
    assert finished["status"] == "succeeded", (finished, output)
    assert process.returncode == 0, output
    assert value not in output
    assert "not installed with the worker" not in output


async def test_a_worker_alone_refuses_to_start_without_its_production_settings(
    tmp_path: Path,
) -> None:
    process = _start(
        [],
        bare_env(tmp_path, BATON_ENVIRONMENT="production", BATON_REDIS_URL="redis://r:6379/0"),
        tmp_path,
    )
    output = await asyncio.to_thread(lambda: process.communicate(timeout=60)[0])
    assert process.returncode == 2, output
    assert output.startswith("Refusing to start: BATON_REDIS_URL must name a Redis user")
    assert "BATON_WORKER_TRANSIT_KEY must be set" in output
    assert "JWT" not in output and "DATABASE" not in output


async def test_sigterm_lets_the_running_task_of_a_worker_alone_finish(
    client: AsyncClient,
    owner: Account,
    settings: Settings,
    running_engine: Engine,
    tmp_path: Path,
) -> None:
    """The first stage of shutdown: stop reading, finish what runs (within the grace)."""
    assert settings.redis_url
    queue = unique_queue()
    process = _start(
        ["--queue", queue, "--name", "draining-alone"],
        bare_env(
            tmp_path,
            BATON_ENVIRONMENT="test",
            BATON_REDIS_URL=settings.redis_url,
            BATON_HEARTBEAT_SECONDS="0.5",
        ),
        tmp_path,
    )
    try:
        job = await create_job(
            client,
            owner,
            [python_task("slow", "worker.builtins:sleep", kwargs={"seconds": 1.5})],
            queue=queue,
        )
        run = await trigger(client, owner, job["id"])
        await wait_for_run(client, owner, run["id"], statuses={"running"}, timeout=60)
        process.send_signal(signal.SIGTERM)  # once, while the task runs
        finished = await wait_for_run(client, owner, run["id"], timeout=60)
        output = await asyncio.to_thread(lambda: process.communicate(timeout=30)[0])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert finished["status"] == "succeeded", (finished, output)
    attempts = task_of(finished, "slow")["attempts"]
    assert [(a["status"], a["worker"]) for a in attempts] == [("succeeded", "draining-alone")]
    assert process.returncode == 0, output
    assert "worker.stopped" in output


def test_baton_worker_is_the_console_script_of_worker_main() -> None:
    """What pip installs as `baton-worker` is what these tests start (the real console
    script is run by tests/onprem/test_worker_install.py, opt-in)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["baton-worker"] == "worker.main:main"
    assert "worker" in project["optional-dependencies"]

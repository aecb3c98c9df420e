"""``pip install 'baton[worker]'`` in a fresh virtualenv gives a ``baton-worker`` that runs tasks.

Opt-in like the rest of tests/onprem (``BATON_TEST_ONPREM=1``, ``make test-install``): pip
fetches the worker's packages (and the build's setuptools) from the package index (about a
minute). This checkout is installed with the ``worker`` extra into a new virtualenv, and
the venv's own ``baton-worker`` - with no access to this checkout or to the
test environment's packages - takes a task from Redis and reports it finished, then stops on
SIGTERM. This needs no engine: the test plays the engine's part on the wire.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
import venv
from pathlib import Path

import pytest
from redis import Redis

from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, TaskMessage

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "backend", "worker", "migrations", "baton_client")
API_MODULES = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "pydantic",
    "pydantic_settings",
    "alembic",
    "jinja2",
    "typer",
    "uvicorn",
)

pytestmark = pytest.mark.skipif(
    os.environ.get("BATON_TEST_ONPREM") != "1",
    reason="installs packages from the index (about a minute): BATON_TEST_ONPREM=1 or "
    "`make test-install`",
)


def _source(tmp_path: Path) -> Path:
    """A copy of this checkout's package (pip builds in it: the checkout gets no build files)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    return source


def test_a_worker_only_install_runs_a_task(tmp_path: Path, redis_url: str) -> None:
    source = _source(tmp_path)
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    subprocess.run(
        [str(home / "bin/pip"), "install", "-q", "--no-cache-dir", f"{source}[worker]"],
        check=True,
        timeout=300,
    )
    clean = {"PATH": f"{home / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = subprocess.run(
        [
            str(home / "bin/python"),
            "-c",
            "import importlib.util as u, sys; "
            f"print([m for m in {API_MODULES!r} if u.find_spec(m)])",
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]", probe.stdout  # none of the API's packages

    tenant, queue = str(uuid.uuid4()), f"installed-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [str(home / "bin/baton-worker"), "--queue", queue, "--name", "installed-worker"],
        cwd=tmp_path,  # not this checkout: the venv's own Baton
        env={**clean, "BATON_ENVIRONMENT": "test", "BATON_REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        message = TaskMessage(
            tenant_id=tenant,
            run_id=str(uuid.uuid4()),
            task_run_id=str(uuid.uuid4()),
            task_name="hello",
            attempt=1,
            spec={
                "name": "hello",
                "type": "python",
                "function": "worker.builtins:echo",
                "kwargs": {"value": 42},
            },
            queue=queue,
        )
        redis.xadd(keys.queue_stream(tenant, queue), {TASK_FIELD: message.to_json()})
        redis.sadd(keys.queue_tenants(queue), tenant)  # what the engine does at dispatch
        finished = None
        deadline = time.monotonic() + 60
        while finished is None and time.monotonic() < deadline and process.poll() is None:
            for _, fields in redis.xrange(keys.events_stream(tenant)):
                event = json.loads(fields[EVENT_FIELD])
                if event["kind"] == "finished":
                    finished = event
            time.sleep(0.1)  # pacing: between polls, inside the 60 s deadline
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        redis.close()
    assert finished is not None, output
    assert finished["worker"] == "installed-worker"
    assert (finished["result"]["status"], finished["result"]["output"]) == ("succeeded", 42)
    assert process.returncode == 0, output

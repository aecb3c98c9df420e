"""A worker of its own for end-to-end secret tests, on a queue of its own.

Its policy is set here explicitly (shell tasks allowed), whatever the shared test worker's
defaults are; the job specs of these tests use ``queue: secrets``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.secrets import TransitKeys
from tests.fixtures.execution import TEST_MODULES, worker_config
from tests.secrets.helpers import QUEUE
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker


@pytest.fixture(scope="session")
async def secrets_worker(
    app: FastAPI, running_engine: Engine, engine_settings: Settings
) -> AsyncIterator[Worker]:
    worker = Worker(
        app.state.redis,  # type: ignore[attr-defined]
        worker_config(
            name="worker-secrets",
            queues=(QUEUE,),
            policy=ExecutorPolicy(
                allow_shell=True,
                python_modules=TEST_MODULES,
                http_allowlist=("127.0.0.1",),
                kill_grace_seconds=0.5,
            ),
            transit_keys=TransitKeys(dict(engine_settings.worker_transit_keys)),
        ),
    )
    task = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await asyncio.wait_for(task, timeout=10)

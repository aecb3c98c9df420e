"""An engine and a worker running inside the test loop against the test database/Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from backend.core.settings import Settings
from backend.engine.loop import Engine
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker, WorkerConfig

TEST_MODULES = ("worker.builtins", "tests.worker.sample_tasks", "tests.runs.tasks")


@pytest.fixture(scope="session")
def engine_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "heartbeat_seconds": 0.5,
            "lost_after_seconds": 3.0,
            "task_deadline_grace_seconds": 1.0,
            "engine_recovery_seconds": 0.5,
        }
    )


def worker_config(**overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {
        "concurrency": 8,
        "heartbeat_seconds": 0.5,
        "visibility_timeout_seconds": 2.0,
        "shutdown_grace_seconds": 2.0,
        "policy": ExecutorPolicy(
            python_modules=TEST_MODULES, http_allowlist=("127.0.0.1",), kill_grace_seconds=0.5
        ),
    }
    values.update(overrides)
    return WorkerConfig(**values)


@pytest.fixture(scope="session")
async def running_engine(app: FastAPI, engine_settings: Settings) -> AsyncIterator[Engine]:
    engine = Engine(engine_settings, app.state.sessionmaker, app.state.redis, name="engine-test")
    task = asyncio.create_task(engine.run())
    yield engine
    engine.stop()
    await asyncio.wait_for(task, timeout=10)


@pytest.fixture(scope="session")
async def running_worker(app: FastAPI, running_engine: Engine) -> AsyncIterator[Worker]:
    worker = Worker(app.state.redis, worker_config(name="worker-test"))
    task = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await asyncio.wait_for(task, timeout=10)

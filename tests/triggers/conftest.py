"""The reactor loop (finished runs -> downstream jobs) running inside the test loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from backend.core.settings import Settings
from backend.engine.loop import Engine
from backend.triggers.reactor import Reactor


@pytest.fixture(scope="session")
async def running_reactor(
    app: FastAPI, running_engine: Engine, engine_settings: Settings
) -> AsyncIterator[Reactor]:
    reactor = Reactor(
        app.state.sessionmaker,  # type: ignore[attr-defined]
        app.state.redis,  # type: ignore[attr-defined]
        engine_settings,
        sweep_seconds=0.5,
    )
    task = asyncio.create_task(reactor.run())
    yield reactor
    reactor.stop()
    await asyncio.wait_for(task, timeout=10)

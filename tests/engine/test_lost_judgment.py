"""When the engine may call a silent attempt lost: only after listening long enough.

A Redis outage is reproduced with a real refused connection (a port nobody listens on)
and with an iteration that spans the outage the way the Redis client's own retries make
it: it begins while Redis is away and succeeds once Redis is back.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.core.settings import Settings
from backend.engine import loop as engine_loop
from backend.engine.loop import Engine

LOST_AFTER = 0.3
HEARTBEAT = 0.1
RESUME_CAP = 0.5  # stands in for BACKOFF_CAP (5 s), to keep the test short


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def engine(app: FastAPI, engine_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr(engine_loop, "BACKOFF_CAP", RESUME_CAP)
    settings = engine_settings.model_copy(
        update={"lost_after_seconds": LOST_AFTER, "heartbeat_seconds": HEARTBEAT}
    )
    return Engine(settings, app.state.sessionmaker, app.state.redis, name="engine-judge")


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _redis_down_iteration() -> None:
    """An events iteration during an outage: Redis refuses the connection."""
    dead = Redis(port=_closed_port(), retry=Retry(NoBackoff(), 0))  # fail at once
    try:
        await dead.ping()
    finally:
        await dead.aclose()


async def _iteration_spanning_the_outage(seconds: float) -> None:
    """Began while Redis was away; the client retried until Redis answered again."""
    began = time.monotonic()
    await _wait_for(lambda: time.monotonic() - began > seconds, timeout=10)


async def test_an_iteration_that_rode_out_the_outage_counts_as_unheard(engine: Engine) -> None:
    await _wait_for(engine.may_judge_lost, timeout=10)  # listening since its start
    await engine._guarded("events", _redis_down_iteration())
    assert engine.lost_before() is None
    # Longer than lost_after: with the clock restarted when the iteration began, the
    # engine would take this deaf stretch for listening and judge at once.
    await engine._guarded("events", _iteration_spanning_the_outage(2 * LOST_AFTER))
    assert engine.lost_before() is None


async def test_after_an_outage_the_engine_waits_for_workers_to_come_back(
    engine: Engine,
) -> None:
    await engine._guarded("events", _redis_down_iteration())
    await engine._guarded("events", asyncio.sleep(0))  # Redis is back
    back = time.monotonic()
    # Workers resume up to RESUME_CAP + one heartbeat after Redis returned: silence over
    # lost_after alone is not yet death.
    await _wait_for(lambda: time.monotonic() - back > LOST_AFTER, timeout=10)
    assert not engine.may_judge_lost()
    await _wait_for(engine.may_judge_lost, timeout=10)
    assert time.monotonic() - back >= LOST_AFTER + RESUME_CAP + HEARTBEAT
    assert engine.lost_before() is not None

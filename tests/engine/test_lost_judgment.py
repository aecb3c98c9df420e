"""When the engine may call a silent attempt lost: only after listening long enough.

A Redis outage is reproduced with a real refused connection (a port bound by nobody who
listens) and with an iteration that spans the outage the way the Redis client's own retries
make it: it begins while Redis is away and succeeds once Redis is back. The engine's clock
is a fake one the test advances, so "longer than lost_after" is a step, not a wait.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.core.settings import Settings
from backend.engine import loop as engine_loop
from backend.engine.loop import Engine
from tests.fixtures.clock import FakeClock

# Whole seconds: the fake clock adds them exactly (no float rounding at the boundary).
LOST_AFTER = 4.0
HEARTBEAT = 1.0
RESUME_CAP = 2.0  # stands in for BACKOFF_CAP (5 s)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield int(probe.getsockname()[1])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(engine_loop, "time", clock)
    return clock


@pytest.fixture
def engine(
    app: FastAPI, engine_settings: Settings, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Engine:
    monkeypatch.setattr(engine_loop, "BACKOFF_CAP", RESUME_CAP)
    settings = engine_settings.model_copy(
        update={"lost_after_seconds": LOST_AFTER, "heartbeat_seconds": HEARTBEAT}
    )
    return Engine(settings, app.state.sessionmaker, app.state.redis, name="engine-judge")


async def _redis_down_iteration(port: int) -> None:
    """An events iteration during an outage: Redis refuses the connection."""
    dead = Redis(port=port, retry=Retry(NoBackoff(), 0))  # fail at once
    try:
        await dead.ping()
    finally:
        await dead.aclose()


async def _iteration_spanning_the_outage(clock: FakeClock, seconds: float) -> None:
    """Began while Redis was away; the client retried for ``seconds`` until Redis answered."""
    await asyncio.sleep(0)
    clock.advance(seconds)


async def test_an_iteration_that_rode_out_the_outage_counts_as_unheard(
    engine: Engine, clock: FakeClock, refused_port: int
) -> None:
    assert not engine.may_judge_lost()
    clock.advance(LOST_AFTER)  # listening since its start
    assert engine.may_judge_lost()
    await engine._guarded("events", _redis_down_iteration(refused_port))
    assert engine.lost_before() is None
    # Longer than lost_after: with the clock restarted when the iteration began, the
    # engine would take this deaf stretch for listening and judge at once.
    await engine._guarded("events", _iteration_spanning_the_outage(clock, 2 * LOST_AFTER))
    assert engine.lost_before() is None


async def test_after_an_outage_the_engine_waits_for_workers_to_come_back(
    engine: Engine, clock: FakeClock, refused_port: int
) -> None:
    await engine._guarded("events", _redis_down_iteration(refused_port))
    await engine._guarded("events", asyncio.sleep(0))  # Redis is back
    # Workers resume up to RESUME_CAP + one heartbeat after Redis returned: silence over
    # lost_after alone is not yet death.
    clock.advance(LOST_AFTER)
    assert not engine.may_judge_lost()
    assert engine.lost_before() is None
    clock.advance(RESUME_CAP + HEARTBEAT - 1)
    assert not engine.may_judge_lost()
    clock.advance(1)
    assert engine.may_judge_lost()
    assert engine.lost_before() is not None

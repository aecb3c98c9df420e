"""kernel.runtime.waits: the deadline wait every process loop sleeps in."""

from __future__ import annotations

import asyncio

import pytest

from kernel.runtime.waits import wait_event


async def test_it_returns_true_when_the_event_is_set() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(event, 60))
    await asyncio.sleep(0)  # the task is now blocked on the event
    event.set()
    assert await waiting is True


async def test_it_returns_false_at_the_deadline() -> None:
    assert await wait_event(asyncio.Event(), 0.01) is False


async def test_a_cancel_landing_as_the_event_is_set_is_not_swallowed() -> None:
    # The race asyncio.wait_for loses on Python 3.11: the awaited event and the cancel in
    # the same loop step. A loop that swallowed it would start another pass when stopped.
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(event, 60))
    await asyncio.sleep(0)
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

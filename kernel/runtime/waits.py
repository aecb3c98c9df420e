"""Waiting for an event with a deadline, in the loops of every long-running process.

``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 ``wait_for`` swallows a
cancel that arrives in the same loop step as the awaited event (the inner wait is done,
so it returns its result instead of raising), and a process being stopped then went on
with another pass of its loop. ``tests/kernel/test_waits.py`` reproduces that race.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` have passed; True when it was set.

    A cancel always propagates, even one that lands as the event is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()

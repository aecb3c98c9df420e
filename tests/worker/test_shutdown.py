"""Worker shutdown ends every helper loop, even one that swallowed a cancellation."""

from __future__ import annotations

import asyncio

from worker.runner import _stop_helpers


async def test_a_helper_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0
    inside = asyncio.Event()

    async def stubborn_loop() -> None:
        # What a redis-py pipeline does when a cancellation lands while it reads a reply:
        # the CancelledError is lost and the loop carries on to its next sleep.
        nonlocal swallowed
        while True:
            try:
                inside.set()
                await asyncio.sleep(0.05)  # payload: the loop under test, between its passes
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    async def plain_loop() -> None:
        await asyncio.sleep(3600)  # payload: a loop idle until it is cancelled

    helpers = [asyncio.create_task(stubborn_loop()), asyncio.create_task(plain_loop())]
    await asyncio.wait_for(inside.wait(), timeout=5)  # the cancellation lands inside its try
    await asyncio.wait_for(_stop_helpers(helpers), timeout=5)
    assert swallowed == 1
    assert all(helper.done() for helper in helpers)

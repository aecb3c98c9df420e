"""backend.core.hooks: how one domain makes another react without importing it."""

from __future__ import annotations

import pytest

from backend import wiring  # noqa: F401  (connects the domains' hooks)
from backend.core.hooks import Hook, HookNotWired
from backend.jobs.hooks import job_schedule_changed
from backend.schedules.service import sync_schedule


async def test_a_required_hook_with_no_handler_refuses_to_fire() -> None:
    hook: Hook[[int]] = Hook("test.required", required=True)
    with pytest.raises(HookNotWired, match=r"test\.required"):
        await hook.fire(1)


async def test_handlers_run_in_order_and_connect_once() -> None:
    seen: list[tuple[str, int]] = []

    async def first(value: int) -> None:
        seen.append(("first", value))

    async def second(value: int) -> None:
        seen.append(("second", value))

    hook: Hook[[int]] = Hook("test.order")
    await hook.fire(0)  # not required: nothing connected is fine
    for handler in (first, second, first):
        hook.connect(handler)
    await hook.fire(7)
    assert seen == [("first", 7), ("second", 7)]


def test_the_wiring_keeps_schedules_in_step_with_jobs() -> None:
    assert job_schedule_changed.required
    assert job_schedule_changed.handlers == (sync_schedule,)

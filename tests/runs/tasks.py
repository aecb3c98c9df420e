"""Python task functions used by the execution tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


def flaky(marker: str, failures: int) -> str:
    """Fail ``failures`` times (counted in a file), then succeed."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    path.write_text(str(count + 1))
    if count < failures:
        raise RuntimeError(f"failure {count + 1}")
    return f"ok after {count} failures"


async def wait(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "waited"


def show(params: dict[str, Any]) -> dict[str, Any]:
    return params


def shout(item: str) -> str:
    return item.upper()


def fail_on(item: str) -> str:
    if item == "boom":
        raise RuntimeError("boom item")
    return item


def show_output(value: Any) -> Any:
    return value


async def wait_for_release(item: Any, folder: str, limit: float = 60.0) -> str:
    """A for_each child that finishes once ``folder``/``item`` exists (the test releases
    the children one at a time), failing after ``limit`` seconds."""
    return await wait_for_file(str(Path(folder) / str(item)), limit)


async def wait_for_file(path: str, limit: float = 60.0) -> str:
    """Finish once ``path`` exists (the test decides when), failing after ``limit`` seconds."""
    for _ in range(int(limit / 0.05)):
        if Path(path).exists():
            return "released"
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{path} never appeared")

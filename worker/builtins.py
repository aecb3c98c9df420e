"""Small functions every worker allows as python tasks (``worker.builtins:<name>``).

Meant for tests, demos and benchmarks: they do nothing a tenant could abuse. The sync ones
are marked ``inline`` (pure, microseconds): the worker calls them on its loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from worker.executors.python import inline

MAX_SLEEP_SECONDS = 24 * 3600


@inline
def noop() -> None:
    """Do nothing; output ``None``."""
    return None


@inline
def echo(value: Any = None, params: dict[str, Any] | None = None) -> Any:
    """Return ``value`` when given, else the run's ``params``."""
    return value if value is not None else params


async def sleep(seconds: float) -> None:
    """Sleep ``seconds`` without blocking the worker (cancellable, so timeouts apply)."""
    seconds = float(seconds)
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_SLEEP_SECONDS}")
    await asyncio.sleep(seconds)


@inline
def fail(message: str = "failed") -> None:
    """Raise ``RuntimeError(message)``: a task that always fails."""
    raise RuntimeError(message)


@inline
def count_rows(rows: int = 0) -> dict[str, int]:
    """Return ``{"rows": rows}`` - stands in for a data job reporting what it processed."""
    return {"rows": int(rows)}

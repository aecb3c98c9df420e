"""Functions the python-executor tests call (allowed as ``tests.worker.sample_tasks``)."""

from __future__ import annotations

import asyncio
import threading
from os import getcwd  # re-exported on purpose: resolving it must be refused
from typing import Any

from worker.executors.python import inline

__all__ = ["getcwd"]


def add(a: int, b: int = 0) -> int:
    return a + b


def with_context(params: dict[str, Any], item: Any = None, scale: int = 1) -> dict[str, Any]:
    return {"params": params, "item": item, "scale": scale}


def takes_var_kwargs(**kwargs: Any) -> dict[str, Any]:
    return {"keys": sorted(kwargs)}


async def async_double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


def not_json() -> object:
    return object()


def nan() -> float:
    return float("nan")


def big(size: int) -> str:
    return "x" * size


def boom(message: str = "kaput") -> None:
    raise ValueError(message)


def exits() -> None:
    raise SystemExit(3)


class Helpers:
    @staticmethod
    def triple(value: int) -> int:
        return value * 3


NOT_CALLABLE = 42


def thread_id() -> int:
    return threading.get_ident()


@inline
def thread_inline() -> int:
    return threading.get_ident()

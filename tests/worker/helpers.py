"""Executor test helpers: a log collector a test can wait on, and the message factory type."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kernel.wire.protocol import LogLine, TaskMessage


class LogCollector:
    """A log sink that keeps every line and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self._changed = asyncio.Event()

    async def __call__(self, line: LogLine) -> None:
        self.lines.append(line)
        self._changed.set()

    def text(self, stream: str) -> list[str]:
        return [line.line for line in self.lines if line.stream == stream]

    async def wait_for(
        self, predicate: Callable[[LogLine], bool], timeout: float = 10.0
    ) -> LogLine:
        async def _wait() -> LogLine:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)


MessageFactory = Callable[..., TaskMessage]

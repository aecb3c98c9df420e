"""Local fixtures for executor tests: a log collector, a message factory (no database) and a
real Docker engine for the docker executor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.docker_engine import DockerEngine, EngineUnavailable, find_docker_engine
from worker.protocol import LogLine, TaskMessage


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


@pytest.fixture
def logs() -> LogCollector:
    return LogCollector()


@pytest.fixture
def make_message() -> MessageFactory:
    def factory(spec: dict[str, Any], **overrides: Any) -> TaskMessage:
        fields: dict[str, Any] = {
            "tenant_id": "tenant-1",
            "run_id": "run-1",
            "task_run_id": "task-run-1",
            "task_name": "step",
            "attempt": 1,
            "spec": spec,
            "params": {"day": "2024-01-01"},
        }
        fields.update(overrides)
        return TaskMessage(**fields)

    return factory


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A real Docker engine holding the busybox test image (tests/fixtures/docker_engine.py):
    one that answers already, else a dockerd of the session's own, stopped at session end.
    Skips, saying why, only when no engine can run here."""
    with contextlib.ExitStack() as stack:
        try:
            engine = stack.enter_context(find_docker_engine())
        except EngineUnavailable as exc:
            pytest.skip(f"no Docker engine can run here: {exc}")
        yield engine

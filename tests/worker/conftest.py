"""Local fixtures for executor tests: a log collector, a message factory (no database) and a
real Docker engine for the docker executor."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.docker_engine import DockerEngine, EngineUnavailable, find_docker_engine
from tests.worker.helpers import LogCollector, MessageFactory
from worker.protocol import TaskMessage


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

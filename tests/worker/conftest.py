"""Local fixtures for executor tests: a log collector and a message factory (no database).
The real Docker engine of the docker executor's tests is ``docker_engine``
(tests/fixtures/docker_engine.py, a plugin of tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.wire.protocol import TaskMessage
from tests.worker.helpers import LogCollector, MessageFactory


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

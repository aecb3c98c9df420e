"""Message shapes exchanged over Redis Streams, as JSON (never pickle).

Dispatch (engine -> worker, on ``baton:{t}:q:<queue>``): a :class:`TaskMessage` is
self-contained - the worker needs nothing else, and never connects to PostgreSQL.

Events (worker -> engine, on ``baton:{t}:events``): :class:`TaskEvent` with ``kind``
``started``, ``heartbeat``, ``log`` or ``finished``. ``attempt`` fences results: the engine
ignores an event whose attempt is not the task run's current one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

EventKind = Literal["started", "heartbeat", "log", "finished"]
ResultStatus = Literal["succeeded", "failed"]
FailureReason = Literal["error", "timeout", "cancelled", "lost", "unsupported"]


def _fields_of(instance: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values as they are (no deep copy, unlike asdict)."""
    return {f.name: getattr(instance, f.name) for f in fields(instance)}


@dataclass(frozen=True)
class TaskMessage:
    tenant_id: str
    run_id: str
    task_run_id: str
    task_name: str
    attempt: int
    spec: dict[str, Any]  # the task's entry of the job spec (type, command, url, ...)
    params: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float | None = None
    item: Any = None  # the fan-out item, when the task is a for_each child
    queue: str = "default"
    # The values of the secrets ``spec`` references, sealed for the worker pool (never in
    # clear on Redis): see kernel/secrets.py.
    secrets: dict[str, str] | None = None

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        # Encoded once (the engine writes a message to its outbox and then to the queue),
        # from a shallow dict: asdict() deep-copies spec, params and item for nothing.
        return json.dumps(_fields_of(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str) -> TaskMessage:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class LogLine:
    stream: Literal["stdout", "stderr", "system"]
    line: str


# Where an executor sends its log lines (the worker streams them to the engine).
LogSink = Callable[[LogLine], Awaitable[None]]


@dataclass(frozen=True)
class ExecutionResult:
    status: ResultStatus
    output: Any = None
    error: str | None = None
    reason: FailureReason | None = None
    exit_code: int | None = None

    @classmethod
    def ok(cls, output: Any = None, *, exit_code: int | None = None) -> ExecutionResult:
        return cls(status="succeeded", output=output, exit_code=exit_code)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        reason: FailureReason = "error",
        output: Any = None,
        exit_code: int | None = None,
    ) -> ExecutionResult:
        return cls(status="failed", error=error, reason=reason, output=output, exit_code=exit_code)


@dataclass(frozen=True)
class TaskEvent:
    """One event of one task attempt, from a worker to the engine."""

    kind: Literal["started", "heartbeat", "log", "finished", "released"]
    task_run_id: str
    run_id: str
    attempt: int
    worker: str
    ts: float  # epoch seconds, worker clock
    lines: list[dict[str, Any]] = field(default_factory=list)  # log: {seq, stream, line, ts}
    result: dict[str, Any] | None = None  # finished: ExecutionResult as a dict

    def to_json(self) -> str:
        return json.dumps(_fields_of(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str) -> TaskEvent:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


EVENT_FIELD = "e"  # stream entries carry one field: the event's JSON
TASK_FIELD = "m"  # dispatch entries carry one field: the TaskMessage's JSON


def read_heartbeat(value: bytes | str | None) -> dict[str, Any] | None:
    """A worker's heartbeat value (JSON: name, queues, version, concurrency, running, at)
    as a dict; None when it is missing or not a JSON object."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None

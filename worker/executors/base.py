"""What every executor shares: the policy, the protocol, log capping and line splitting.

An executor turns one :class:`~kernel.wire.protocol.TaskMessage` into one
:class:`~kernel.wire.protocol.ExecutionResult`. The contract, for every task type:

* task failures never raise - they come back as ``ExecutionResult.failed(...)``;
* timeouts and cancellation belong to the caller (``asyncio.wait_for`` / ``task.cancel()``):
  on ``CancelledError`` an executor cleans up everything it started (process group,
  container, connection) and then re-raises ``CancelledError``;
* log lines go to an async sink, each capped at :data:`MAX_LINE_BYTES`, the whole attempt at
  ``policy.max_log_bytes`` (past it, lines are dropped after one ``system`` note).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kernel.wire.protocol import ExecutionResult, LogLine, LogSink, TaskMessage
from worker.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr", "system"]

MAX_LINE_BYTES = 16 * 1024
TRUNCATED_MARK = " [line truncated]"


@dataclass(frozen=True)
class ExecutorPolicy:
    """What this worker lets tasks do; built by the worker from ``Settings``."""

    allow_shell: bool = True
    allow_docker: bool = True
    # Shell tasks run in the sandbox (worker/sandbox/) unless this is off; with it on and
    # the sandbox unavailable, they are refused.
    sandbox: bool = True
    sandbox_limits: SandboxLimits = field(default_factory=SandboxLimits)
    # Docker tasks run confined (no network, non-root, read-only, limits; see
    # worker/executors/docker.py); off only on a worker whose sandbox is off.
    docker_confined: bool = True
    # Allowed module prefixes for python tasks: the exact module or a dotted prefix of it.
    python_modules: tuple[str, ...] = ("worker.builtins",)
    # Hostnames (exact) or CIDRs/addresses that http tasks may reach despite being private.
    http_allowlist: tuple[str, ...] = ()
    kill_grace_seconds: float = 2.0
    max_log_bytes: int = 5_000_000  # per attempt; past it, lines are dropped with one note
    max_output_bytes: int = 1_000_000


class Executor(Protocol):
    """Runs one task attempt; see the module docstring for the contract."""

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Run ``message`` to completion, streaming its log lines to ``log``."""
        ...


class SpecError(ValueError):
    """A task spec that cannot be run as written (reported as a failed result)."""


class UnsupportedExecutor:
    """Fails every task with reason ``unsupported`` (unknown type, or refused by policy)."""

    def __init__(self, error: str) -> None:
        self.error = error

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Refuse the task without running anything."""
        logger.info(
            "worker.executor.unsupported",
            extra={"task_run_id": message.task_run_id, "error": self.error},
        )
        return ExecutionResult.failed(self.error, reason="unsupported")


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (never mid-character)."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text, False
    return raw[:max_bytes].decode("utf-8", errors="ignore"), True


class LogWriter:
    """Caps lines and the attempt's total, and shields the executor from sink failures.

    A sink that raises (say, Redis is briefly away) must not leave a process running
    unsupervised, so its errors are logged once and the line is dropped.
    """

    def __init__(self, sink: LogSink, max_bytes: int, *, max_line_bytes: int = MAX_LINE_BYTES):
        self._sink = sink
        self._max_bytes = max_bytes
        self._max_line_bytes = max_line_bytes
        self._written = 0
        self._limit_noted = False
        self._sink_failed = False

    @property
    def bytes_written(self) -> int:
        """Bytes of log lines accepted so far (the dropped-lines note excluded)."""
        return self._written

    async def write(self, stream: Stream, line: str) -> None:
        """Send one line (without its newline), capped; dropped once the attempt's cap is hit."""
        line, cut = truncate_utf8(line, self._max_line_bytes)
        if cut:
            line += TRUNCATED_MARK
        size = len(line.encode("utf-8", errors="replace")) + 1
        if self._written + size > self._max_bytes:
            if not self._limit_noted:
                self._limit_noted = True
                await self._send(
                    LogLine(
                        "system",
                        f"log limit of {self._max_bytes} bytes reached; further lines dropped",
                    )
                )
            return
        self._written += size
        await self._send(LogLine(stream, line))

    async def write_text(self, stream: Stream, text: str) -> None:
        """Send a multi-line text (a traceback, say) line by line."""
        for line in text.rstrip("\n").split("\n"):
            await self.write(stream, line)

    async def _send(self, line: LogLine) -> None:
        try:
            await self._sink(line)
        except Exception:
            if not self._sink_failed:
                self._sink_failed = True
                logger.warning("worker.executor.log_sink_failed", exc_info=True)


class LineSplitter:
    """Turns a byte stream into log lines as they arrive, at most ``max_line_bytes`` each.

    A line longer than the cap is sent truncated as soon as the cap is reached; the rest of
    it, up to the next newline, is discarded - so memory stays bounded whatever the task
    prints.
    """

    def __init__(self, writer: LogWriter, stream: Stream, *, max_line_bytes: int = MAX_LINE_BYTES):
        self._writer = writer
        self._stream = stream
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False

    async def feed(self, chunk: bytes) -> None:
        """Consume one chunk, emitting every completed line."""
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                self._append(chunk[start:])
                if len(self._buffer) > self._max:
                    await self._emit(truncated=True)
                    self._discarding = True
                return
            self._append(chunk[start:newline])
            if self._discarding:
                self._discarding = False
                self._buffer.clear()
            else:
                await self._emit(truncated=len(self._buffer) > self._max)
            start = newline + 1

    async def close(self) -> None:
        """Emit the last, unterminated line (if any)."""
        if self._buffer and not self._discarding:
            await self._emit(truncated=len(self._buffer) > self._max)
        self._buffer.clear()
        self._discarding = False

    def _append(self, data: bytes) -> None:
        if not self._discarding:
            self._buffer += data

    async def _emit(self, *, truncated: bool) -> None:
        raw = bytes(self._buffer[: self._max])
        self._buffer.clear()
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", errors="replace")
        if truncated:
            text += TRUNCATED_MARK
        await self._writer.write(self._stream, text)


def require_str(spec: dict[str, Any], key: str, *, default: str | None = None) -> str:
    """``spec[key]`` as a non-empty string, or :class:`SpecError`."""
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        raise SpecError(f"spec.{key} must be a non-empty string")
    return value


def string_env(spec: dict[str, Any], key: str = "env") -> dict[str, str]:
    """``spec[key]`` as environment variables: names are checked, scalar values stringified."""
    raw = spec.get(key) or {}
    if not isinstance(raw, dict):
        raise SpecError(f"spec.{key} must be an object of NAME: value")
    env: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise SpecError(f"spec.{key} has an invalid variable name: {name!r}")
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool | int | float):
            text = json.dumps(value)
        else:
            raise SpecError(f"spec.{key}.{name} must be a string, number or boolean")
        if "\0" in text:
            raise SpecError(f"spec.{key}.{name} contains a NUL byte")
        env[name] = text
    return env


def baton_env(message: TaskMessage) -> dict[str, str]:
    """The ``BATON_*`` variables describing the attempt (shell and docker tasks)."""
    env = {
        "BATON_RUN_ID": message.run_id,
        "BATON_TASK": message.task_name,
        "BATON_ATTEMPT": str(message.attempt),
        "BATON_TENANT_ID": message.tenant_id,
        "BATON_PARAMS": json.dumps(message.params, separators=(",", ":"), default=str),
    }
    if message.item is not None:
        env["BATON_ITEM"] = (
            message.item
            if isinstance(message.item, str)
            else json.dumps(message.item, separators=(",", ":"), default=str)
        )
    return env


def check_output_size(output: Any, policy: ExecutorPolicy) -> str | None:
    """An error message if ``output`` is not JSON or is larger than the policy allows."""
    try:
        encoded = json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"output is not JSON-serialisable: {exc}"
    if len(encoded.encode("utf-8")) > policy.max_output_bytes:
        return f"output exceeds the limit of {policy.max_output_bytes} bytes"
    return None

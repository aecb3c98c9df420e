"""Docker tasks: run an image as a detached container and stream its logs.

Spec: ``image`` (str), ``command`` (str or list of str, optional), ``env`` (dict). The
container also gets the ``BATON_*`` variables of shell tasks (without ``BATON_OUTPUT``);
the task's output is ``None`` and its result follows the container's exit code.

The Docker SDK is synchronous, so every call runs in a thread. stdout and stderr are
followed as two log streams (each in its own thread, handing chunks back to the loop), so
lines keep their stream name. On cancellation (the caller's timeout included) the container
is killed and removed before ``CancelledError`` is re-raised; after a normal exit it is
removed too. When the worker has no Docker engine (or no Docker SDK), tasks fail with reason
``unsupported`` - the engine can then send them to a worker that has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from worker.executors.base import (
    ExecutorPolicy,
    LineSplitter,
    LogSink,
    LogWriter,
    SpecError,
    Stream,
    baton_env,
    require_str,
    string_env,
)
from worker.protocol import ExecutionResult, TaskMessage

logger = logging.getLogger(__name__)

NO_ENGINE = "No Docker engine answers on this worker"
LOG_DRAIN_SECONDS = 5.0
ClientFactory = Callable[[], Any]  # returns a docker.DockerClient (or a stand-in)


def default_client_factory() -> Any:
    """``docker.from_env()``; the SDK is imported lazily (it is optional on workers)."""
    import docker

    return docker.from_env()


class DockerExecutor:
    """Runs ``docker`` tasks; see the module docstring.

    ``client_factory`` builds the Docker client (default: ``docker.from_env``); tests
    inject a fake one.
    """

    def __init__(
        self, policy: ExecutorPolicy, *, client_factory: ClientFactory | None = None
    ) -> None:
        self.policy = policy
        self._client_factory = client_factory or default_client_factory

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Run the container to completion; the result carries its exit code."""
        if not self.policy.allow_docker:
            return ExecutionResult.failed(
                "Docker tasks are not allowed on this worker", reason="unsupported"
            )
        try:
            image = require_str(message.spec, "image")
            command = _command(message.spec)
            env = {**string_env(message.spec), **baton_env(message)}
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))

        client = await self._connect()
        if client is None:
            return ExecutionResult.failed(NO_ENGINE, reason="unsupported")
        try:
            return await self._run(client, message, image, command, env, log)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.close)

    async def _connect(self) -> Any | None:
        """A client whose engine answered a ping, or None.

        No engine is an expected condition on many workers: it is logged as one line (the
        error, no traceback). The probe runs entirely in a thread and hands back only a
        message, so the SDK's exception (and the sockets its traceback holds) never reach
        the event loop.
        """
        client, error = await asyncio.to_thread(self._probe)
        if client is None:
            logger.warning("worker.docker.no_engine", extra={"error": error})
        return client

    def _probe(self) -> tuple[Any | None, str | None]:
        try:
            client = self._client_factory()
        except ImportError:
            return None, "the Docker SDK (the 'docker' package) is not installed"
        except Exception as exc:  # noqa: BLE001 - whatever the SDK raises means "no engine"
            return None, _describe(exc)
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001 - whatever the SDK raises means "no engine"
            with contextlib.suppress(Exception):
                client.close()
            return None, _describe(exc)
        return client, None

    async def _run(
        self,
        client: Any,
        message: TaskMessage,
        image: str,
        command: str | list[str] | None,
        env: dict[str, str],
        log: LogSink,
    ) -> ExecutionResult:
        labels = {
            "baton.tenant_id": message.tenant_id,
            "baton.run_id": message.run_id,
            "baton.task_run_id": message.task_run_id,
            "baton.attempt": str(message.attempt),
        }
        writer = LogWriter(log, self.policy.max_log_bytes)
        starting = _Starting()

        def start() -> Any:
            container = client.containers.run(
                image, command, environment=env, labels=labels, detach=True
            )
            return starting.started(container)

        try:
            container = await asyncio.to_thread(start)
        except asyncio.CancelledError:
            # The thread cannot be stopped: whichever of it and us comes second removes
            # the container.
            orphan = starting.cancel()
            if orphan is not None:
                await _kill_and_remove(orphan)
            raise
        except Exception as exc:  # noqa: BLE001 - SDK errors (image missing, API errors)
            return ExecutionResult.failed(f"cannot start container: {type(exc).__name__}: {exc}")

        logger.info(
            "worker.docker.started",
            extra={"task_run_id": message.task_run_id, "container": _short_id(container)},
        )
        followers = [
            asyncio.create_task(_follow(container, stream, LineSplitter(writer, stream)))
            for stream in ("stdout", "stderr")
        ]
        try:
            status = await asyncio.to_thread(container.wait)
            _, pending = await asyncio.wait(followers, timeout=LOG_DRAIN_SECONDS)
            if pending:
                logger.warning("worker.docker.logs_unfinished", extra={"pending": len(pending)})
        except asyncio.CancelledError:
            logger.info(
                "worker.docker.killing",
                extra={"task_run_id": message.task_run_id, "container": _short_id(container)},
            )
            await _kill_and_remove(container)
            raise
        except Exception as exc:  # noqa: BLE001 - the engine failed us mid-run (restart, ...)
            await _kill_and_remove(container)
            return ExecutionResult.failed(
                f"lost track of the container: {type(exc).__name__}: {exc}"
            )
        finally:
            for follower in followers:
                follower.cancel()

        await _remove(container)
        exit_code = _exit_code(status)
        logger.info(
            "worker.docker.finished",
            extra={"task_run_id": message.task_run_id, "exit_code": exit_code},
        )
        if exit_code is None:
            return ExecutionResult.failed(f"container ended without an exit code: {status!r}")
        if exit_code != 0:
            return ExecutionResult.failed(f"exit code {exit_code}", exit_code=exit_code)
        return ExecutionResult.ok(None, exit_code=0)


def _command(spec: dict[str, Any]) -> str | list[str] | None:
    command = spec.get("command")
    if command is None or isinstance(command, str):
        return command
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        return list(command)
    raise SpecError("spec.command must be a string or a list of strings")


def _exit_code(status: Any) -> int | None:
    if isinstance(status, dict):
        code = status.get("StatusCode")
        return code if isinstance(code, int) else None
    return status if isinstance(status, int) else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _short_id(container: Any) -> str:
    return str(getattr(container, "short_id", None) or getattr(container, "id", "?"))


async def _follow(container: Any, stream: Stream, splitter: LineSplitter) -> None:
    """Forward one of the container's output streams, chunk by chunk, as lines."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    stop = threading.Event()

    def pump() -> None:
        chunks: Iterator[bytes] | None = None
        try:
            chunks = container.logs(
                stream=True, follow=True, stdout=stream == "stdout", stderr=stream == "stderr"
            )
            for chunk in chunks:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except Exception:
            logger.warning("worker.docker.log_stream_failed", exc_info=True)
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
            with contextlib.suppress(RuntimeError):  # the loop may be gone by now
                loop.call_soon_threadsafe(queue.put_nowait, None)

    thread = threading.Thread(target=pump, name=f"baton-docker-{stream}", daemon=True)
    thread.start()
    try:
        while (chunk := await queue.get()) is not None:
            await splitter.feed(chunk)
        await splitter.close()
    finally:
        stop.set()


async def _remove(container: Any) -> None:
    try:
        await asyncio.to_thread(container.remove, force=True)
    except Exception:
        logger.warning("worker.docker.remove_failed", exc_info=True)


async def _kill_and_remove(container: Any) -> None:
    try:
        await asyncio.to_thread(container.kill)
    except Exception:
        logger.info("worker.docker.kill_failed", exc_info=True)  # often: already stopped
    await _remove(container)


class _Starting:
    """Hands a container started in a thread to the loop, or removes it if we were cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._container: Any = None

    def started(self, container: Any) -> Any:
        """Called in the start thread once the container runs."""
        with self._lock:
            if not self._cancelled:
                self._container = container
                return container
        with contextlib.suppress(Exception):
            container.remove(force=True)
        return None

    def cancel(self) -> Any:
        """Called on cancellation: the container, if it already started (else None)."""
        with self._lock:
            self._cancelled = True
            return self._container

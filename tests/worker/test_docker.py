"""Docker executor.

There is no Docker engine on this machine (and none can be started here), so:

* the no-engine path is tested for real, with the real Docker SDK pointed at a socket
  that does not exist;
* the engine path is tested with a **mocked** Docker client injected through
  ``client_factory`` - it mimics the parts of ``docker.DockerClient`` the executor uses
  (``ping``, ``containers.run``, ``Container.logs/wait/kill/remove``), blocking calls
  included, but it does not prove compatibility with a real engine.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker.conftest import LogCollector, MessageFactory
from worker.executors import DockerExecutor, ExecutorPolicy
from worker.executors.docker import NO_ENGINE

POLICY = ExecutorPolicy()


class FakeContainer:
    """A container whose output is scripted; ``wait`` blocks until it "exits" or is killed."""

    def __init__(self, stdout: list[bytes], stderr: list[bytes], exit_code: int, hold: bool):
        self.id = "c0ffee0123456789"
        self.short_id = self.id[:10]
        self._output = {"stdout": stdout, "stderr": stderr}
        self._exit_code = exit_code
        self.exited = threading.Event()
        if not hold:
            self.exited.set()
        self.killed = False
        self.removed = False

    def logs(self, *, stream: bool, follow: bool, stdout: bool, stderr: bool) -> Iterator[bytes]:
        assert stream and follow and stdout != stderr
        yield from self._output["stdout" if stdout else "stderr"]
        self.exited.wait(timeout=30)

    def wait(self) -> dict[str, Any]:
        if not self.exited.wait(timeout=30):
            raise TimeoutError("fake container never exited")
        return {"StatusCode": 137 if self.killed else self._exit_code, "Error": None}

    def kill(self) -> None:
        self.killed = True
        self.exited.set()

    def remove(self, *, force: bool = False) -> None:
        self.removed = True


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self._client = client

    def run(self, image: str, command: Any = None, **kwargs: Any) -> FakeContainer:
        if self._client.run_error is not None:
            raise self._client.run_error
        self._client.run_calls.append({"image": image, "command": command, **kwargs})
        assert self._client.container is not None
        return self._client.container


class FakeClient:
    def __init__(self, container: FakeContainer | None = None, *, answers: bool = True):
        self.container = container
        self.answers = answers
        self.run_calls: list[dict[str, Any]] = []
        self.run_error: Exception | None = None
        self.closed = False
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        if not self.answers:
            raise ConnectionError("engine gone")
        return True

    def close(self) -> None:
        self.closed = True


async def test_no_engine_for_real(
    logs: LogCollector,
    make_message: MessageFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The real SDK (``docker.from_env``) against a socket nobody listens on."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    message = make_message({"image": "alpine:3", "command": "true"})
    with warnings.catch_warnings():
        # docker-py's UnixHTTPConnection.connect does not close its socket when connect()
        # fails; collect it here rather than as a stray ResourceWarning in a later test.
        warnings.simplefilter("ignore", ResourceWarning)
        result = await DockerExecutor(POLICY).execute(message, logs)
        gc.collect()
    assert (result.status, result.reason, result.error) == ("failed", "unsupported", NO_ENGINE)


async def test_engine_not_answering_ping(logs: LogCollector, make_message: MessageFactory) -> None:
    client = FakeClient(answers=False)
    executor = DockerExecutor(POLICY, client_factory=lambda: client)
    result = await executor.execute(make_message({"image": "alpine:3"}), logs)
    assert (result.reason, result.error) == ("unsupported", NO_ENGINE)
    assert client.closed


async def test_refused_when_not_allowed(logs: LogCollector, make_message: MessageFactory) -> None:
    def factory() -> FakeClient:
        raise AssertionError("must not connect")

    executor = DockerExecutor(ExecutorPolicy(allow_docker=False), client_factory=factory)
    result = await executor.execute(make_message({"image": "alpine:3"}), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")


async def test_success_streams_logs_and_removes(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    """Mocked engine (no Docker here): logs per stream, env and labels, removal."""
    container = FakeContainer(
        stdout=[b"hello\nwor", b"ld\n", b"tail"], stderr=[b"warn\n"], exit_code=0, hold=False
    )
    client = FakeClient(container)
    executor = DockerExecutor(POLICY, client_factory=lambda: client)
    spec = {"image": "alpine:3", "command": ["sh", "-c", "echo hi"], "env": {"MODE": "fast"}}
    result = await executor.execute(make_message(spec, item=[1, 2]), logs)
    assert result.status == "succeeded", result
    assert (result.output, result.exit_code) == (None, 0)
    assert logs.text("stdout") == ["hello", "world", "tail"]
    assert logs.text("stderr") == ["warn"]
    (call,) = client.run_calls
    assert call["image"] == "alpine:3"
    assert call["command"] == ["sh", "-c", "echo hi"]
    assert call["detach"] is True
    env = call["environment"]
    assert env["MODE"] == "fast"
    assert (env["BATON_RUN_ID"], env["BATON_TASK"], env["BATON_ITEM"]) == ("run-1", "step", "[1,2]")
    assert call["labels"]["baton.task_run_id"] == "task-run-1"
    assert container.removed and not container.killed
    assert client.closed


async def test_nonzero_exit(logs: LogCollector, make_message: MessageFactory) -> None:
    """Mocked engine (no Docker here)."""
    container = FakeContainer(stdout=[], stderr=[b"boom\n"], exit_code=2, hold=False)
    executor = DockerExecutor(POLICY, client_factory=lambda: FakeClient(container))
    result = await executor.execute(make_message({"image": "alpine:3"}), logs)
    assert (result.status, result.error, result.exit_code) == ("failed", "exit code 2", 2)
    assert container.removed


async def test_cancel_kills_and_removes(logs: LogCollector, make_message: MessageFactory) -> None:
    """Mocked engine (no Docker here): a running container is killed and removed."""
    container = FakeContainer(stdout=[b"working\n"], stderr=[], exit_code=0, hold=True)
    executor = DockerExecutor(POLICY, client_factory=lambda: FakeClient(container))
    task = asyncio.create_task(executor.execute(make_message({"image": "alpine:3"}), logs))
    await logs.wait_for(lambda line: line.line == "working")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert container.killed and container.removed


async def test_timeout_kills_and_removes(logs: LogCollector, make_message: MessageFactory) -> None:
    """Mocked engine (no Docker here)."""
    container = FakeContainer(stdout=[], stderr=[], exit_code=0, hold=True)
    executor = DockerExecutor(POLICY, client_factory=lambda: FakeClient(container))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(executor.execute(make_message({"image": "a"}), logs), 0.3)
    assert container.killed and container.removed


async def test_engine_lost_mid_run(logs: LogCollector, make_message: MessageFactory) -> None:
    """Mocked engine (no Docker here): ``wait`` failing is a task failure, not a crash."""
    container = FakeContainer(stdout=[], stderr=[], exit_code=0, hold=False)

    def broken_wait() -> dict[str, Any]:
        raise ConnectionError("engine restarted")

    container.wait = broken_wait  # type: ignore[method-assign]
    executor = DockerExecutor(POLICY, client_factory=lambda: FakeClient(container))
    result = await executor.execute(make_message({"image": "alpine:3"}), logs)
    assert result.status == "failed"
    assert result.error is not None and "engine restarted" in result.error
    assert container.removed


async def test_start_failure(logs: LogCollector, make_message: MessageFactory) -> None:
    """Mocked engine (no Docker here): an SDK error while starting fails the task."""
    client = FakeClient()
    client.run_error = RuntimeError("pull access denied for nope")
    executor = DockerExecutor(POLICY, client_factory=lambda: client)
    result = await executor.execute(make_message({"image": "nope"}), logs)
    assert result.status == "failed"
    assert result.error is not None and "pull access denied" in result.error


@pytest.mark.parametrize(
    "spec", [{}, {"image": ""}, {"image": "a", "command": 5}, {"image": "a", "env": []}]
)
async def test_bad_spec(logs: LogCollector, make_message: MessageFactory, spec: dict) -> None:
    executor = DockerExecutor(POLICY, client_factory=FakeClient)
    result = await executor.execute(make_message(spec), logs)
    assert (result.status, result.reason) == ("failed", "error")

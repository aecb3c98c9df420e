"""Docker executor, against a real Docker engine (the ``docker_engine`` fixture: an engine
that answers, or a dockerd of the session's own) running a busybox image imported without a
registry. Every case checks afterwards that no container of its own and no temp dir (the
bind-mounted output directory) is left.

Two faults a real engine cannot be made to show on demand are injected into the real SDK
(and say so): an engine lost mid-run, and an engine that cannot enforce the confinement's
limits. The no-engine path uses the real SDK against a socket nobody listens on.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from backend.core.settings import Environment, Settings
from backend.processes import worker_config
from kernel.wire.protocol import ExecutionResult, TaskMessage
from tests.fixtures.docker_engine import DockerEngine
from tests.fixtures.waiting import eventually
from tests.worker.helpers import LogCollector, MessageFactory
from worker.executors import DockerExecutor, ExecutorPolicy
from worker.executors.docker import (
    CONFINED_FILE_BYTES,
    CONFINED_MEMORY_BYTES,
    CONFINED_PIDS,
    NO_ENGINE,
    OUTPUT_PATH,
    WORK_DIR,
)
from worker.sandbox import launch
from worker.sandbox.launch import UID_BASE, UID_COUNT, allocate_task_uid, release_task_uid

LEFTOVER_DEADLINE = 10.0


@dataclass
class Engine:
    """The session's engine as one test sees it: its own tenant id labels what it starts."""

    engine: DockerEngine
    client: Any
    tenant_id: str
    make_message: MessageFactory
    temp_dir: Path  # the executor's temp dirs land here

    @property
    def image(self) -> str:
        return self.engine.image

    def executor(self, *, confined: bool = True, **policy: Any) -> DockerExecutor:
        return DockerExecutor(
            ExecutorPolicy(docker_confined=confined, **policy), client_factory=self.engine.client
        )

    def message(self, spec: dict[str, Any], **overrides: Any) -> TaskMessage:
        return self.make_message(spec, tenant_id=self.tenant_id, **overrides)

    def shell(
        self, script: str, env: dict[str, Any] | None = None, **overrides: Any
    ) -> TaskMessage:
        spec = {"image": self.image, "command": ["sh", "-c", script], "env": env or {}}
        return self.message(spec, **overrides)

    def leftovers(self) -> list[str]:
        label = {"label": f"baton.tenant_id={self.tenant_id}"}
        # ignore_removed: a container being removed right now may be gone by the time
        # docker-py inspects what it listed (a 404, not a leftover).
        containers = self.client.containers.list(all=True, filters=label, ignore_removed=True)
        return [f"container {c.short_id}" for c in containers] + [
            f"dir {path.name}" for path in self.temp_dir.glob("baton-docker-*")
        ]

    async def wait_no_leftovers(self) -> list[str]:
        """Leftovers once none remain or the deadline passed (a container created while its
        task was being cancelled is removed by the start thread, just after the task ends)."""
        return await eventually(
            lambda: asyncio.to_thread(self.leftovers),
            lambda found: not found,
            timeout=LEFTOVER_DEADLINE,
            interval=0.1,
            what="no container or directory of the test's tenant left",
        )


@pytest.fixture
async def engine(
    docker_engine: DockerEngine,
    make_message: MessageFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Engine]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = docker_engine.client()
    tenant_id = f"tenant-{uuid.uuid4().hex[:12]}"
    view = Engine(docker_engine, client, tenant_id, make_message, tmp_path)
    try:
        yield view
        assert await view.wait_no_leftovers() == []
    finally:
        client.close()


def ok(result: ExecutionResult) -> ExecutionResult:
    assert result.status == "succeeded", result
    return result


# --- running, logs, exit codes --------------------------------------------------------------


@pytest.mark.parametrize("confined", [True, False])
async def test_runs_and_streams_stdout_and_stderr(
    engine: Engine, logs: LogCollector, confined: bool
) -> None:
    script = "echo hello; echo warn >&2; echo world; printf tail"
    result = ok(await engine.executor(confined=confined).execute(engine.shell(script), logs))
    assert (result.output, result.exit_code) == (None, 0)
    assert logs.text("stdout") == ["hello", "world", "tail"]
    assert logs.text("stderr") == ["warn"]


async def test_string_command_is_split_into_arguments(engine: Engine, logs: LogCollector) -> None:
    message = engine.message({"image": engine.image, "command": "echo 'one  two' three"})
    ok(await engine.executor().execute(message, logs))
    assert logs.text("stdout") == ["one  two three"]


async def test_nonzero_exit_fails_with_its_code(engine: Engine, logs: LogCollector) -> None:
    message = engine.shell("echo boom >&2; exit 3")
    result = await engine.executor().execute(message, logs)
    assert (result.status, result.error, result.exit_code) == ("failed", "exit code 3", 3)
    assert logs.text("stderr") == ["boom"]


async def test_command_missing_from_the_image_fails(engine: Engine, logs: LogCollector) -> None:
    message = engine.message({"image": engine.image, "command": ["/no/such/program"]})
    result = await engine.executor().execute(message, logs)
    assert result.status == "failed"
    assert result.error is not None and "/no/such/program" in result.error


async def test_image_without_a_default_command_needs_one(
    engine: Engine, logs: LogCollector
) -> None:
    result = await engine.executor().execute(engine.message({"image": engine.image}), logs)
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("cannot start container")


async def test_missing_image_that_cannot_be_pulled_fails(
    engine: Engine, logs: LogCollector
) -> None:
    """No registry answers here: the one pull attempt fails and the task with it."""
    message = engine.message({"image": "baton-test/absent:1", "command": ["true"]})
    result = await engine.executor().execute(message, logs)
    assert (result.status, result.reason) == ("failed", "error")
    assert result.error is not None and result.error.startswith("cannot start container")


# --- BATON_OUTPUT --------------------------------------------------------------------------


@pytest.mark.parametrize("confined", [True, False])
async def test_baton_output_json_is_the_output(
    engine: Engine, logs: LogCollector, confined: bool
) -> None:
    script = """printf '{"rows": 3, "ok": true, "name": "caf\\303\\251"}' > "$BATON_OUTPUT" """
    result = ok(await engine.executor(confined=confined).execute(engine.shell(script), logs))
    assert result.output == {"rows": 3, "ok": True, "name": "café"}


async def test_invalid_baton_output_fails(engine: Engine, logs: LogCollector) -> None:
    result = await engine.executor().execute(engine.shell('echo "{nope" > "$BATON_OUTPUT"'), logs)
    assert (result.status, result.exit_code) == ("failed", 0)
    assert result.error is not None and "not valid JSON" in result.error


async def test_baton_output_over_the_limit_fails(engine: Engine, logs: LogCollector) -> None:
    script = """printf '"%s"' "$(head -c 300 /dev/zero | tr '\\0' x)" > "$BATON_OUTPUT" """
    result = await engine.executor(max_output_bytes=100).execute(engine.shell(script), logs)
    assert result.status == "failed"
    assert result.error == "BATON_OUTPUT exceeds the limit of 100 bytes"


async def test_baton_output_must_be_a_regular_file(engine: Engine, logs: LogCollector) -> None:
    """Unconfined, the image's root user can swap the file for a link: it is not followed."""
    script = 'rm "$BATON_OUTPUT" && ln -s /etc/passwd "$BATON_OUTPUT"'
    result = await engine.executor(confined=False).execute(engine.shell(script), logs)
    assert (result.status, result.exit_code) == ("failed", 0)
    assert result.error == "cannot read BATON_OUTPUT: output.json is not a regular file"


async def test_output_of_a_failed_container_is_not_taken(
    engine: Engine, logs: LogCollector
) -> None:
    result = await engine.executor().execute(
        engine.shell('echo \'{"a": 1}\' > "$BATON_OUTPUT"; exit 1'), logs
    )
    assert (result.status, result.output, result.exit_code) == ("failed", None, 1)


# --- environment ---------------------------------------------------------------------------


@pytest.mark.parametrize("confined", [True, False])
async def test_env_and_baton_variables(engine: Engine, logs: LogCollector, confined: bool) -> None:
    env = {"MODE": "fast", "COUNT": 3, "BATON_TASK": "spoofed", "BATON_OUTPUT": "/x"}
    message = engine.shell("env", env, item=[1, 2], attempt=2)
    ok(await engine.executor(confined=confined).execute(message, logs))
    env = dict(line.split("=", 1) for line in logs.text("stdout"))
    assert (env["MODE"], env["COUNT"]) == ("fast", "3")
    assert env["BATON_TASK"] == "step"  # the spec cannot override BATON_* variables
    assert env["BATON_OUTPUT"] == OUTPUT_PATH
    assert (env["BATON_RUN_ID"], env["BATON_ATTEMPT"]) == ("run-1", "2")
    assert env["BATON_TENANT_ID"] == engine.tenant_id
    assert json.loads(env["BATON_PARAMS"]) == {"day": "2024-01-01"}
    assert env["BATON_ITEM"] == "[1,2]"
    if confined:
        assert (env["HOME"], env["TMPDIR"]) == (WORK_DIR, WORK_DIR)


# --- cancellation and timeouts --------------------------------------------------------------


async def test_cancel_kills_and_removes_the_container(engine: Engine, logs: LogCollector) -> None:
    task = asyncio.create_task(
        engine.executor().execute(engine.shell("echo ready; sleep 300"), logs)
    )
    await logs.wait_for(lambda line: line.line == "ready", timeout=30)
    (container,) = engine.client.containers.list(
        filters={"label": f"baton.tenant_id={engine.tenant_id}"}
    )
    assert container.labels["baton.task_run_id"] == "task-run-1"
    assert container.labels["baton.attempt"] == "1"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.leftovers() == []  # killed and removed, temp dir too, before the re-raise


async def test_timeout_kills_and_removes_the_container(engine: Engine, logs: LogCollector) -> None:
    execution = engine.executor().execute(engine.shell("echo ready; sleep 300"), logs)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(execution, timeout=3)
    # Whether the timeout hit while the container ran or while it was being created, none
    # is left (the fixture waits for the start thread's removal in the second case).


async def test_engine_lost_mid_run_fails_and_removes(
    engine: Engine, logs: LogCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injected into the real SDK (an engine restart cannot be staged mid-test):
    ``wait`` fails; the task fails and its container, still running, is removed."""

    def lost(self: Container, **kwargs: Any) -> dict[str, Any]:
        raise docker.errors.APIError("engine restarted")

    monkeypatch.setattr(Container, "wait", lost)
    result = await engine.executor().execute(engine.shell("sleep 300"), logs)
    assert result.status == "failed"
    assert result.error is not None and "engine restarted" in result.error


# --- spec validation, policy, no engine ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({}, "spec.image must be a non-empty string"),
        ({"image": ""}, "spec.image must be a non-empty string"),
        ({"image": 5}, "spec.image must be a non-empty string"),
        ({"image": "x", "command": 5}, "spec.command must be a string or a list of strings"),
        ({"image": "x", "command": ["a", 1]}, "spec.command must be a string or a list of strings"),
        ({"image": "x", "env": "A=1"}, "spec.env must be an object of NAME: value"),
        ({"image": "x", "env": {"A=B": "1"}}, "spec.env has an invalid variable name: 'A=B'"),
        ({"image": "x", "env": {"A": [1]}}, "spec.env.A must be a string, number or boolean"),
    ],
)
async def test_bad_spec_fails_before_any_container(
    engine: Engine, logs: LogCollector, spec: dict[str, Any], error: str
) -> None:
    result = await engine.executor().execute(engine.message(spec), logs)
    assert (result.status, result.reason, result.error) == ("failed", "error", error)


async def test_refused_when_not_allowed(logs: LogCollector, make_message: MessageFactory) -> None:
    def factory() -> Any:
        raise AssertionError("must not connect")

    executor = DockerExecutor(ExecutorPolicy(allow_docker=False), client_factory=factory)
    result = await executor.execute(make_message({"image": "alpine:3"}), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")
    assert result.error == "Docker tasks are not allowed on this worker"


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
        result = await DockerExecutor(ExecutorPolicy()).execute(message, logs)
        gc.collect()
    assert (result.status, result.reason, result.error) == ("failed", "unsupported", NO_ENGINE)


# --- confinement (the shared pool) ----------------------------------------------------------


async def test_confined_runs_as_a_uid_of_its_own_without_capabilities(
    engine: Engine, logs: LogCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A confined task is a uid and gid of the sandbox's per-task pool, never one another
    task holds, and its work dir belongs to it."""
    held = allocate_task_uid()  # another task's, running meanwhile
    other = UID_BASE + (held - UID_BASE + 1) % UID_COUNT
    draws = [held - UID_BASE, other - UID_BASE]  # the pool first draws the held uid
    monkeypatch.setattr(launch.secrets, "randbelow", lambda _n: draws.pop(0))
    script = (
        f"id -u; id -g; stat -c '%u %g' {WORK_DIR}; "
        "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status"
    )
    try:
        ok(await engine.executor(confined=True).execute(engine.shell(script), logs))
    finally:
        release_task_uid(held)
    lines = logs.text("stdout")
    assert lines[:3] == [str(other), str(other), f"{other} {other}"]
    status = dict(line.split(":\t") for line in lines[3:])
    assert status == {"CapEff": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}
    assert other not in launch._uids_in_use  # given back to the pool


async def test_unconfined_runs_as_the_image_says(engine: Engine, logs: LogCollector) -> None:
    """The baseline the confinement tests are measured against (an on-prem worker)."""
    script = "id -u; touch /etc/written && echo rootfs-writable"
    ok(await engine.executor(confined=False).execute(engine.shell(script), logs))
    assert logs.text("stdout") == ["0", "rootfs-writable"]


async def test_confined_writes_only_its_work_dir(engine: Engine, logs: LogCollector) -> None:
    script = f"""
        pwd
        echo data > {WORK_DIR}/file && echo work-dir-writable
        for path in /etc/x /x /tmp/x /baton/x /baton/output/other; do
            touch "$path" 2>/dev/null && echo "WROTE $path" || echo "denied $path"
        done
        mount | grep -c ' / .*[(,]ro[,)]'
    """
    ok(await engine.executor(confined=True).execute(engine.shell(script), logs))
    assert logs.text("stdout") == [
        WORK_DIR,
        "work-dir-writable",
        "denied /etc/x",
        "denied /x",
        "denied /tmp/x",
        "denied /baton/x",
        "denied /baton/output/other",
        "1",  # the root filesystem is mounted read-only
    ]


async def test_confined_has_no_network(
    engine: Engine, logs: LogCollector, docker_engine: DockerEngine
) -> None:
    """A server on the engine's host, reachable from an unconfined container, is not from a
    confined one, which has no interface but loopback."""
    if docker_engine.gateway is None:
        pytest.skip("this engine gives containers no network: there is nothing to take away")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nreached")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, docker_engine.gateway, 0)
    port = server.sockets[0].getsockname()[1]
    script = (
        "grep -o '^ *[a-z0-9]*:' /proc/net/dev | tr -d ' :'; "
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {docker_engine.gateway} {port} "
        "| tail -n 1 | grep reached || echo unreachable"
    )
    async with server:
        ok(await engine.executor(confined=False).execute(engine.shell(script), logs))
        unconfined = logs.text("stdout")
        logs.lines.clear()
        ok(await engine.executor(confined=True).execute(engine.shell(script), logs))
        confined = logs.text("stdout")
    assert unconfined[-1] == "reached" and len(unconfined) > 2  # lo and a network interface
    assert confined == ["lo", "unreachable"]


async def test_confined_pids_limit_is_enforced(engine: Engine, logs: LogCollector) -> None:
    script = f"i=0; while [ $i -lt {2 * CONFINED_PIDS} ]; do sleep 300 & i=$((i+1)); done; echo all"
    result = await engine.executor(confined=True).execute(engine.shell(script), logs)
    assert result.status == "failed"
    assert any("can't fork" in line for line in logs.text("stderr"))
    assert "all" not in logs.text("stdout")
    logs.lines.clear()
    ok(await engine.executor(confined=False).execute(engine.shell(script), logs))
    assert logs.text("stdout") == ["all"]  # the baseline: without the limit, all started


async def test_confined_memory_cpu_and_file_size_limits(engine: Engine, logs: LogCollector) -> None:
    """The limits as the kernel holds them for the container (cgroup v1 or v2)."""
    script = """
        for f in memory/memory.limit_in_bytes memory.max pids/pids.max pids.max \
                 cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu.max; do
            [ -r /sys/fs/cgroup/$f ] && echo "$f=$(cat /sys/fs/cgroup/$f)"
        done
        grep '^Max file size' /proc/self/limits | tr -s ' ' | sed 's/ *$//'
    """
    ok(await engine.executor(confined=True).execute(engine.shell(script), logs))
    values = dict(line.split("=", 1) for line in logs.text("stdout") if "=" in line)
    memory = values.get("memory/memory.limit_in_bytes") or values.get("memory.max")
    pids = values.get("pids/pids.max") or values.get("pids.max")
    if "cpu.max" in values:
        quota, period = values["cpu.max"].split()
    else:
        quota, period = values["cpu/cpu.cfs_quota_us"], values["cpu/cpu.cfs_period_us"]
    assert (memory, pids) == (str(CONFINED_MEMORY_BYTES), str(CONFINED_PIDS))
    assert int(quota) == int(period)  # one CPU
    size = f"Max file size {CONFINED_FILE_BYTES} {CONFINED_FILE_BYTES} bytes"
    assert size in logs.text("stdout")


async def test_confined_refused_where_the_engine_cannot_enforce_limits(
    engine: Engine, logs: LogCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injected into the real SDK (this engine has every cgroup): ``info`` says the
    pids limit is unsupported, so the container would not be confined - no task runs."""
    real_info = docker.DockerClient.info

    def info(self: docker.DockerClient) -> dict[str, Any]:
        return {**real_info(self), "PidsLimit": False}

    monkeypatch.setattr(docker.DockerClient, "info", info)
    result = await engine.executor(confined=True).execute(engine.shell("echo ran"), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")
    assert result.error == (
        "Docker tasks run confined on this worker, but its Docker engine cannot enforce pids limits"
    )
    assert logs.lines == []
    logs.lines.clear()
    ok(await engine.executor(confined=False).execute(engine.shell("echo ran"), logs))


@pytest.mark.parametrize("sandbox", [True, False])
def test_worker_confines_docker_tasks_unless_its_sandbox_is_off(sandbox: bool) -> None:
    settings = Settings(_env_file=None, environment=Environment.test, worker_sandbox=sandbox)  # type: ignore[call-arg]
    assert worker_config(settings, queues=["q"], concurrency=1).policy.docker_confined is sandbox


def test_docker_tasks_are_confined_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_WORKER_SANDBOX", raising=False)
    settings = Settings(_env_file=None, environment=Environment.test)  # type: ignore[call-arg]
    assert worker_config(settings, queues=["q"], concurrency=1).policy.docker_confined
    assert ExecutorPolicy().docker_confined

"""What a tenant's sandboxed shell task cannot do: every test fails if its guard goes.

Each wall is shown from both sides: the worker itself reaches the canary (the Redis, the
PostgreSQL, the listener, the file), and the task run through the real executor does not.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kernel.wire.protocol import ExecutionResult
from tests.fixtures.services import Services
from tests.fixtures.waiting import eventually
from tests.worker import outside
from tests.worker.helpers import LogCollector, MessageFactory
from tests.worker.processes import running, sleeper
from tests.worker.required import skip_unless_required
from worker.executors import ExecutorPolicy, ShellExecutor
from worker.sandbox import launch, probe
from worker.sandbox.limits import SandboxLimits

POLICY = ExecutorPolicy(kill_grace_seconds=0.5)

# Run inside the sandbox with the system's python3: tries each target, one line per target.
CONNECT = """
import socket, sys
for target in sys.argv[1:]:
    try:
        if target.startswith("/"):
            conn = socket.socket(socket.AF_UNIX)
            conn.settimeout(5)
            conn.connect(target)
        else:
            host, port = target.rsplit(":", 1)
            conn = socket.create_connection((host, int(port)), timeout=5)
        conn.close()
        print(target, "connected")
    except OSError as exc:
        print(target, "refused", type(exc).__name__)
"""


@pytest.fixture(autouse=True)
async def sandbox_available() -> None:
    reason = await probe.unavailable_reason()
    if reason is not None:
        skip_unless_required(f"the sandbox is unavailable here: {reason}")


async def run(
    make_message: MessageFactory,
    command: str,
    policy: ExecutorPolicy = POLICY,
    env: dict[str, str] | None = None,
) -> tuple[ExecutionResult, LogCollector]:
    logs = LogCollector()
    message = make_message({"command": command, "env": env or {}})
    result = await asyncio.wait_for(ShellExecutor(policy).execute(message, logs), timeout=60)
    return result, logs


async def connect_from_task(
    make_message: MessageFactory, *targets: str, first: str = "true"
) -> dict[str, str]:
    """``{target: "connected" | "refused"}`` as seen from a sandboxed task (after ``first``)."""
    result, logs = await run(
        make_message,
        f'{first} >/dev/null 2>&1; python3 -c "$CONNECT"' + "".join(f" {t}" for t in targets),
        env={"CONNECT": CONNECT},
    )
    assert result.status == "succeeded", (result, logs.lines)
    seen = {}
    for line in logs.text("stdout"):
        target, verdict, *_ = line.split()
        seen[target] = verdict
    assert set(seen) == set(targets), logs.lines
    return seen


def host_connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture
async def loopback_listener() -> AsyncIterator[int]:
    """A TCP listener on the worker's 127.0.0.1."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_cannot_reach_redis_postgres_or_the_host_loopback(
    make_message: MessageFactory, services: Services, loopback_listener: int
) -> None:
    redis = urlsplit(services.redis_url)
    postgres = urlsplit(services.database_url)
    assert redis.hostname and redis.port
    redis_target = f"{redis.hostname}:{redis.port}"
    listener = f"127.0.0.1:{loopback_listener}"
    # slirp4netns's alias of the host's loopback, which --disable-host-loopback closes.
    slirp_alias = f"10.0.2.2:{loopback_listener}"
    reachable = [redis_target, listener]
    if postgres.hostname:  # else PostgreSQL listens on a Unix socket only (the next test)
        reachable.append(f"{postgres.hostname}:{postgres.port or 5432}")
    for target in reachable:
        host, port = target.rsplit(":", 1)
        assert host_connects(host, int(port)), f"the worker itself must reach {target}"

    seen = await connect_from_task(make_message, *reachable, slirp_alias)
    assert seen == dict.fromkeys([*reachable, slirp_alias], "refused")


def postgres_socket(database_url: str) -> str:
    """The test PostgreSQL's Unix socket: the URL's socket directory (the embedded server),
    else the system server's."""
    query = dict(pair.split("=", 1) for pair in urlsplit(database_url).query.split("&") if pair)
    port = urlsplit(database_url).port or 5432
    return f"{query.get('host', '/var/run/postgresql')}/.s.PGSQL.{port}"


async def test_cannot_reach_the_postgres_unix_socket(
    make_message: MessageFactory, services: Services
) -> None:
    socket_path = postgres_socket(services.database_url)
    if not Path(socket_path).exists():
        pytest.skip("no PostgreSQL Unix socket on this machine")
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(socket_path)  # the worker can
    result, logs = await run(
        make_message,
        f'python3 -c "$CONNECT" {socket_path}; ls -A /var/run /run 2>&1 || true',
        env={"CONNECT": CONNECT},
    )
    assert result.status == "succeeded", logs.lines
    stdout = logs.text("stdout")
    assert stdout[0] == f"{socket_path} refused FileNotFoundError"
    assert not any("postgresql" in line for line in stdout[1:])  # no /var/run, no /run
    assert not any(".s.PGSQL" in line for line in stdout[1:])


async def test_cannot_read_the_worker_environment(
    make_message: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("BATON_TEST_CANARY", canary)  # undone after the test, always
    result, logs = await run(make_message, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert result.status == "succeeded", logs.lines
    assert logs.text("stdout"), "the task printed its environment"
    assert not any(canary in line for line in logs.text("stdout"))
    assert "BATON_TASK=step" in logs.text("stdout")  # the executor's own variables are there


@pytest.fixture
def canary_files() -> Iterator[list[Path]]:
    """A canary file in the worker's cwd (the checkout), the host's /tmp and /root."""
    name = f"baton-canary-{secrets.token_hex(6)}"
    paths = [Path.cwd() / name, Path("/tmp") / name]
    if os.geteuid() == 0:
        paths.append(Path("/root") / name)
    for path in paths:
        path.write_text("worker secret\n")
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


async def test_cannot_read_the_worker_files(
    make_message: MessageFactory, canary_files: list[Path]
) -> None:
    reads = "; ".join(f"cat {path} 2>&1" for path in canary_files)
    listing = f"ls -A /tmp /root {Path.cwd()} 2>&1"
    result, logs = await run(make_message, f"{reads}; {listing}; true")
    assert result.status == "succeeded", logs.lines
    stdout = logs.text("stdout")
    assert not any("worker secret" in line for line in stdout)
    assert not any(canary_files[0].name in line for line in stdout if not line.startswith("cat"))
    assert sum("No such file or directory" in line for line in stdout) >= len(canary_files)


async def test_own_uid_and_processes(make_message: MessageFactory) -> None:
    sleep, marker = sleeper()
    command = f"id -u; ls /proc | grep -c '^[0-9]'; {sleep}"
    logs = LogCollector()
    task = asyncio.create_task(
        ShellExecutor(POLICY).execute(make_message({"command": command}), logs)
    )
    try:
        await eventually(lambda: len(logs.text("stdout")) == 2, what="the task's report")
        await eventually(lambda: bool(running(marker)), what="the task's sleep runs")
        (pid,) = running(marker)
        uid_line = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1]
        host_uid = int(uid_line.split()[0])
        inside_uid, visible = logs.text("stdout")
        assert inside_uid == "65534"  # nobody, inside
        if os.geteuid() == 0:  # outside: a per-task unprivileged uid, never root
            assert launch.UID_BASE <= host_uid < launch.UID_BASE + launch.UID_COUNT
        else:
            assert host_uid == os.getuid()
        # Its own pid namespace: a handful of its own processes, none of the worker's.
        assert int(visible) < 10
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_memory_limit(make_message: MessageFactory) -> None:
    policy = ExecutorPolicy(sandbox_limits=SandboxLimits(memory_mb=256))
    allocate = "python3 -c 'import sys; bytearray(int(sys.argv[1]) * 1024 * 1024)'"
    within, _ = await run(make_message, f"{allocate} 64", policy)
    beyond, logs = await run(make_message, f"{allocate} 512", policy)
    assert within.status == "succeeded"
    assert beyond.status == "failed"
    assert any("MemoryError" in line for line in logs.text("stderr"))


async def test_process_limit_bounds_a_fork_bomb(make_message: MessageFactory) -> None:
    limit = 24
    policy = ExecutorPolicy(sandbox_limits=SandboxLimits(processes=limit))
    bomb = """
import os, signal, time
children = []
for _ in range(500):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print(len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
"""
    result, logs = await run(make_message, 'python3 -c "$BOMB"', policy, env={"BOMB": bomb})
    assert result.status == "succeeded", logs.lines
    forked = int(logs.text("stdout")[0])
    assert 0 < forked < limit


async def test_cpu_and_file_size_limits(make_message: MessageFactory) -> None:
    policy = ExecutorPolicy(sandbox_limits=SandboxLimits(cpu_seconds=1, file_mb=1))
    spin, _ = await run(make_message, "while :; do :; done", policy)
    assert spin.status == "failed"
    assert spin.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    big, _ = await run(make_message, "head -c 2000000 /dev/zero > big", policy)
    small, _ = await run(make_message, "head -c 500000 /dev/zero > small", policy)
    assert big.status == "failed"
    assert small.status == "succeeded"


@pytest.fixture(scope="module")
def world() -> Iterator[outside.Outside]:
    if reason := outside.skip_reason():
        skip_unless_required(reason)
    with outside.outside_world() as built:
        yield built


async def test_reaches_a_public_address_but_not_metadata_or_private(
    make_message: MessageFactory, world: outside.Outside
) -> None:
    targets = {
        address: f"{address}:{world.port}"
        for address in (world.public, world.metadata, world.private)
    }
    for address in targets:
        assert outside.answers(address), f"the worker itself must reach {address}"
    # The task first tries to lift the filter: it has no capability over its namespace.
    lift = "/usr/sbin/iptables -F OUTPUT; /usr/sbin/iptables -P OUTPUT ACCEPT"
    seen = await connect_from_task(make_message, *targets.values(), first=lift)
    assert seen == {
        targets[world.public]: "connected",
        targets[world.metadata]: "refused",
        targets[world.private]: "refused",
    }


async def test_unsandboxed_task_reaches_them_all(
    make_message: MessageFactory, world: outside.Outside
) -> None:
    """The control: the same task without the sandbox gets through (what the filter stops)."""
    targets = [f"{a}:{world.port}" for a in (world.public, world.metadata, world.private)]
    result, logs = await run(
        make_message,
        'python3 -c "$CONNECT"' + "".join(f" {t}" for t in targets),
        ExecutorPolicy(sandbox=False),
        env={"CONNECT": CONNECT},
    )
    assert result.status == "succeeded", logs.lines
    assert logs.text("stdout") == [f"{t} connected" for t in targets]


async def test_refused_when_the_sandbox_is_unavailable(
    make_message: MessageFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No bubblewrap on the tools' path: the real probe fails and the task is refused."""
    monkeypatch.setattr(launch, "TOOL_PATH", str(tmp_path))
    monkeypatch.setattr(probe, "_probed", [])
    marker = tmp_path / "ran"
    result, _ = await run(make_message, f"touch {marker}")
    assert (result.status, result.reason) == ("failed", "unsupported")
    assert result.error is not None
    assert "bwrap is not installed" in result.error and "BATON_WORKER_SANDBOX" in result.error
    assert not marker.exists()
    # Turned off by the operator, the same task runs (on the host).
    ran, _ = await run(make_message, f"touch {marker}", ExecutorPolicy(sandbox=False))
    assert ran.status == "succeeded" and marker.exists()

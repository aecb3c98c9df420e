"""Docker tasks: run an image as a container, stream its logs, collect its JSON output.

Spec: ``image`` (str), ``command`` (str or list of str, optional), ``env`` (dict). The
container gets the spec's ``env``, then the ``BATON_*`` variables of shell tasks, which the
spec cannot override, ``BATON_OUTPUT`` included: ``/baton/output/output.json``, a file the
task may write its JSON output to, read once the container exits with code 0. Its directory
is a temp dir of the worker's, bind-mounted: the engine must see the worker's filesystem (a
local engine). The worker creates the file (mode 0666) before the start, so any user may
write it; the directory is the worker's, so a confined task can write nothing else there.

Confined containers (``policy.docker_confined``: on unless the worker's sandbox is off,
``BATON_WORKER_SANDBOX``; the shared pool always runs sandboxed) have no network
(``network_mode=none``: not even the filtered egress sandboxed shell tasks get - a
deliberate choice, see docs/security.md), run as a uid and gid of their own whatever the
image says (one per task, from the sandbox's per-task uid pool,
``worker.sandbox.launch.allocate_task_uid``: two tasks never share a uid, and none is a
host account), on a read-only root filesystem with one writable directory
(``/baton/work``: a tmpfs owned by that uid that is the working directory, ``HOME`` and
``TMPDIR``), with every capability dropped,
``no-new-privileges``, and pids, memory, CPU and file-size limits (the ``CONFINED_*``
constants). An engine that cannot enforce those limits (its ``info`` says so) gets no
confined task: it fails with reason ``unsupported``.

The Docker SDK is synchronous, so every call runs in a thread. The worker attaches to the
container's stdout and stderr before starting it, as ``docker run`` does (a log stream
followed after the start can end before a last, unterminated line arrives), and one thread
hands the demultiplexed chunks back to the loop, so lines keep their stream name. On
cancellation (the caller's timeout included) the container is killed and removed (its
anonymous volumes with it) before ``CancelledError`` is re-raised; after a normal exit it is
removed too. From its creation on, each container has a guard process
(``container_guard.py``, in a session of its own) that removes it if the worker dies
without doing so - a SIGKILLed worker leaves no container running. A missing image is
pulled once. When the worker has no Docker engine (or no
Docker SDK), tasks fail with reason ``unsupported`` - the engine can then send them to a
worker that has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kernel.wire.protocol import ExecutionResult, TaskMessage
from worker.executors.base import (
    ExecutorPolicy,
    LineSplitter,
    LogSink,
    LogWriter,
    SpecError,
    Stream,
    baton_env,
    check_output_size,
    require_str,
    string_env,
)
from worker.sandbox.launch import allocate_task_uid, release_task_uid

logger = logging.getLogger(__name__)

NO_ENGINE = "No Docker engine answers on this worker"
LOG_DRAIN_SECONDS = 5.0
ClientFactory = Callable[[], Any]  # returns a docker.DockerClient (or a stand-in)

WORK_DIR = "/baton/work"
OUTPUT_DIR = "/baton/output"
OUTPUT_FILE = "output.json"
GUARD_SCRIPT = Path(__file__).with_name("container_guard.py")
GUARD_STAND_DOWN = b"done\n"  # container_guard.STAND_DOWN
OUTPUT_PATH = f"{OUTPUT_DIR}/{OUTPUT_FILE}"
# Confinement (shared pool): a per-task uid:gid of the sandbox's pool. Numeric ids: the
# image needs no /etc/passwd entry for them.
CONFINED_MEMORY_BYTES = 512 * 1024 * 1024  # swap included, where the engine can limit swap
CONFINED_PIDS = 128
CONFINED_NANO_CPUS = 1_000_000_000  # one CPU
CONFINED_WORK_DIR_BYTES = 64 * 1024 * 1024
# RLIMIT_FSIZE: no single file larger than the work dir, which also bounds the output file
# (it sits on the worker's disk).
CONFINED_FILE_BYTES = CONFINED_WORK_DIR_BYTES
# What ``docker info`` must report for the limits above to hold.
CONFINED_ENGINE_FEATURES = {
    "MemoryLimit": "memory limits",
    "PidsLimit": "pids limits",
    "CpuCfsQuota": "CPU quotas",
}


def default_client_factory() -> Any:
    """``docker.from_env()``; the SDK is imported lazily (it is optional on workers)."""
    import docker

    return docker.from_env()


class _Refused(Exception):
    """The engine cannot run this task as the policy requires (reason ``unsupported``)."""


class DockerExecutor:
    """Runs ``docker`` tasks; see the module docstring.

    ``client_factory`` builds the Docker client (default: ``docker.from_env``); tests
    inject a client of their own engine.
    """

    def __init__(
        self, policy: ExecutorPolicy, *, client_factory: ClientFactory | None = None
    ) -> None:
        self.policy = policy
        self._client_factory = client_factory or default_client_factory

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Run the container to completion; the result carries its exit code and output."""
        if not self.policy.allow_docker:
            return ExecutionResult.failed(
                "Docker tasks are not allowed on this worker", reason="unsupported"
            )
        try:
            image = require_str(message.spec, "image")
            command = _command(message.spec)
            env = {**string_env(message.spec), **baton_env(message), "BATON_OUTPUT": OUTPUT_PATH}
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))
        if self.policy.docker_confined:
            env = {"HOME": WORK_DIR, "TMPDIR": WORK_DIR, **env}

        client = await self._connect()
        if client is None:
            return ExecutionResult.failed(NO_ENGINE, reason="unsupported")
        output_dir: Path | None = None
        uid = allocate_task_uid() if self.policy.docker_confined else None
        try:
            output_dir = await asyncio.to_thread(_make_output_dir)
            return await self._run(client, message, image, command, env, output_dir, log, uid)
        finally:
            if uid is not None:
                release_task_uid(uid)
            if output_dir is not None:
                await asyncio.to_thread(shutil.rmtree, output_dir, ignore_errors=True)
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
        output_dir: Path,
        log: LogSink,
        uid: int | None,
    ) -> ExecutionResult:
        labels = {
            "baton.tenant_id": message.tenant_id,
            "baton.run_id": message.run_id,
            "baton.task_run_id": message.task_run_id,
            "baton.attempt": str(message.attempt),
        }
        writer = LogWriter(log, self.policy.max_log_bytes)
        starting = _Starting()
        options = _container_options(env, labels, output_dir, uid=uid)
        address = _engine_address(client)
        try:
            return await self._run_started(
                client, message, image, command, options, output_dir, writer, starting, address
            )
        finally:
            await asyncio.to_thread(starting.stand_down)

    async def _run_started(
        self,
        client: Any,
        message: TaskMessage,
        image: str,
        command: str | list[str] | None,
        options: dict[str, Any],
        output_dir: Path,
        writer: LogWriter,
        starting: _Starting,
        address: str,
    ) -> ExecutionResult:
        """Create, guard, start and follow the container to its end."""

        def start() -> Any:
            if self.policy.docker_confined:
                _require_confinement(client)
            container = _create(client, image, command, options)
            if not starting.started(container, lambda c: _guard(c, address)):
                return None  # we were cancelled meanwhile; started() removed it
            output = container.attach(stdout=True, stderr=True, stream=True, demux=True)
            try:
                container.start()
            except BaseException:
                _close(output)
                raise
            return container, output

        try:
            container, output = await asyncio.to_thread(start)
        except asyncio.CancelledError:
            # The thread cannot be stopped: whichever of it and us comes second removes
            # the container.
            orphan = starting.cancel()
            if orphan is not None:
                await _kill_and_remove(orphan)
            raise
        except Exception as exc:  # noqa: BLE001 - SDK errors (image missing, API errors)
            orphan = starting.cancel()
            if orphan is not None:
                await _remove(orphan)
            if isinstance(exc, _Refused):
                return ExecutionResult.failed(str(exc), reason="unsupported")
            return ExecutionResult.failed(f"cannot start container: {_describe(exc)}")

        logger.info(
            "worker.docker.started",
            extra={
                "task_run_id": message.task_run_id,
                "container": _short_id(container),
                "confined": self.policy.docker_confined,
            },
        )
        follower = asyncio.create_task(_follow(output, writer))
        try:
            status = await asyncio.to_thread(container.wait)
            _, pending = await asyncio.wait([follower], timeout=LOG_DRAIN_SECONDS)
            if pending:
                logger.warning("worker.docker.logs_unfinished")
        except asyncio.CancelledError:
            logger.info(
                "worker.docker.killing",
                extra={"task_run_id": message.task_run_id, "container": _short_id(container)},
            )
            await _kill_and_remove(container)
            raise
        except Exception as exc:  # noqa: BLE001 - the engine failed us mid-run (restart, ...)
            await _kill_and_remove(container)
            return ExecutionResult.failed(f"lost track of the container: {_describe(exc)}")
        finally:
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
        return await self._read_output(output_dir / OUTPUT_FILE)

    async def _read_output(self, path: Path) -> ExecutionResult:
        limit = self.policy.max_output_bytes
        try:
            raw = await asyncio.to_thread(_read_capped, path, limit + 1)
        except OSError as exc:
            return ExecutionResult.failed(f"cannot read BATON_OUTPUT: {exc}", exit_code=0)
        if raw is None or not raw.strip():
            return ExecutionResult.ok(None, exit_code=0)
        if len(raw) > limit:
            return ExecutionResult.failed(
                f"BATON_OUTPUT exceeds the limit of {limit} bytes", exit_code=0
            )
        try:
            output: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return ExecutionResult.failed(f"BATON_OUTPUT is not valid JSON: {exc}", exit_code=0)
        problem = check_output_size(output, self.policy)
        if problem is not None:
            return ExecutionResult.failed(f"BATON_OUTPUT: {problem}", exit_code=0)
        return ExecutionResult.ok(output, exit_code=0)


def _command(spec: dict[str, Any]) -> str | list[str] | None:
    command = spec.get("command")
    if command is None or isinstance(command, str):
        return command
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        return list(command)
    raise SpecError("spec.command must be a string or a list of strings")


def _container_options(
    env: dict[str, str], labels: dict[str, str], output_dir: Path, *, uid: int | None
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create``: always the output directory, and when
    confined (``uid``: the task's own uid and gid), the confinement described in the module
    docstring."""
    from docker.types import Mount, Ulimit

    options: dict[str, Any] = {
        "environment": env,
        "labels": labels,
        "mounts": [Mount(target=OUTPUT_DIR, source=str(output_dir), type="bind")],
    }
    if uid is not None:
        options.update(
            user=f"{uid}:{uid}",
            working_dir=WORK_DIR,
            network_mode="none",
            read_only=True,
            tmpfs={WORK_DIR: f"size={CONFINED_WORK_DIR_BYTES},uid={uid},gid={uid}"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=CONFINED_PIDS,
            mem_limit=CONFINED_MEMORY_BYTES,
            memswap_limit=CONFINED_MEMORY_BYTES,
            nano_cpus=CONFINED_NANO_CPUS,
            ulimits=[Ulimit(name="fsize", soft=CONFINED_FILE_BYTES, hard=CONFINED_FILE_BYTES)],
        )
    return options


def _require_confinement(client: Any) -> None:
    """Raise :class:`_Refused` unless the engine can enforce the confinement's limits.

    An engine without, say, the pids cgroup accepts the limit and only warns that it
    discarded it: that container would not be confined.
    """
    info = client.info()
    missing = [label for key, label in CONFINED_ENGINE_FEATURES.items() if not info.get(key)]
    if missing:
        raise _Refused(
            "Docker tasks run confined on this worker, but its Docker engine cannot enforce "
            + ", ".join(missing)
        )


def _create(client: Any, image: str, command: str | list[str] | None, options: dict) -> Any:
    """``containers.create``, pulling the image once when the engine does not have it."""
    from docker.errors import ImageNotFound

    try:
        return client.containers.create(image, command, **options)
    except ImageNotFound:
        client.images.pull(image)
        return client.containers.create(image, command, **options)


def _make_output_dir() -> Path:
    """The worker's temp dir behind ``/baton/output``, holding an empty, world-writable
    ``output.json``; the directory itself stays the worker's (0755)."""
    path = Path(tempfile.mkdtemp(prefix="baton-docker-"))
    path.chmod(0o755)
    fd = os.open(path / OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.fchmod(fd, 0o666)  # whatever the umask says
    finally:
        os.close(fd)
    return path


def _read_capped(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the output file; None when there is none.

    The task controls that path (an unconfined container's root may replace the file): only
    a regular file is opened - never a link, FIFO or device node, whose mere opening could
    block or act - and the descriptor is checked again.
    """
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            raise OSError(f"{path.name} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return handle.read(limit)


def _exit_code(status: Any) -> int | None:
    if isinstance(status, dict):
        code = status.get("StatusCode")
        return code if isinstance(code, int) else None
    return status if isinstance(status, int) else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _short_id(container: Any) -> str:
    return str(getattr(container, "short_id", None) or getattr(container, "id", "?"))


async def _follow(output: Iterator[tuple[bytes | None, bytes | None]], writer: LogWriter) -> None:
    """Forward the container's attached, demultiplexed output, chunk by chunk, as lines."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue()
    stop = threading.Event()
    streams: tuple[Stream, Stream] = ("stdout", "stderr")
    splitters = {name: LineSplitter(writer, name) for name in streams}

    def pump() -> None:
        try:
            for out, err in output:
                if stop.is_set():
                    break
                for name, chunk in zip(streams, (out, err), strict=True):
                    if chunk:
                        loop.call_soon_threadsafe(queue.put_nowait, (name, chunk))
        except Exception:
            logger.warning("worker.docker.log_stream_failed", exc_info=True)
        finally:
            _close(output)
            with contextlib.suppress(RuntimeError):  # the loop may be gone by now
                loop.call_soon_threadsafe(queue.put_nowait, None)

    thread = threading.Thread(target=pump, name="baton-docker-output", daemon=True)
    thread.start()
    try:
        while (item := await queue.get()) is not None:
            name, chunk = item
            await splitters[name].feed(chunk)
        for splitter in splitters.values():
            await splitter.close()
    finally:
        stop.set()


def _close(output: Any) -> None:
    close = getattr(output, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


async def _remove(container: Any) -> None:
    """Remove the container and its anonymous volume (the output directory)."""
    try:
        await asyncio.to_thread(container.remove, v=True, force=True)
    except Exception:
        logger.warning("worker.docker.remove_failed", exc_info=True)


async def _kill_and_remove(container: Any) -> None:
    try:
        await asyncio.to_thread(container.kill)
    except Exception:
        logger.info("worker.docker.kill_failed", exc_info=True)  # often: already stopped
    await _remove(container)


def _engine_address(client: Any) -> str:
    """The engine's Unix socket as a ``unix://`` URL when the client talks to one (a guard
    must reach the same engine), else "" (the guard uses the environment's engine)."""
    adapter = getattr(getattr(client, "api", None), "_custom_adapter", None)
    socket_path = getattr(adapter, "socket_path", None)
    return f"unix://{socket_path}" if isinstance(socket_path, str) else ""


def _guard(container: Any, address: str) -> subprocess.Popen[bytes] | None:
    """Start the container's guard (see ``container_guard.py``); None if it cannot start
    (logged: the task still runs, unguarded)."""
    try:
        return subprocess.Popen(  # noqa: S603 - our own script, the engine's container id
            # -P: the script's folder (this package, with its docker.py) is not on the path
            [sys.executable, "-P", str(GUARD_SCRIPT), str(container.id), address],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the worker's process group spares it
        )
    except OSError:
        logger.warning("worker.docker.guard_failed", exc_info=True)
        return None


class _Starting:
    """Hands a container created in a thread to the loop, or removes it if we were cancelled;
    holds the container's guard until it is told to stand down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._container: Any = None
        self._guard: subprocess.Popen[bytes] | None = None

    def started(
        self, container: Any, guard: Callable[[Any], subprocess.Popen[bytes] | None]
    ) -> bool:
        """Called in the start thread once the container exists: False if we were cancelled
        (then it is removed here); else its ``guard`` is started, under the lock, so that
        :meth:`stand_down` never misses it."""
        with self._lock:
            if not self._cancelled:
                self._container = container
                self._guard = guard(container)
                return True
        with contextlib.suppress(Exception):
            container.remove(v=True, force=True)
        return False

    def cancel(self) -> Any:
        """Called on cancellation or failure: the container, if it was created (else None)."""
        with self._lock:
            self._cancelled = True
            return self._container

    def stand_down(self) -> None:
        """The container is dealt with (removed, or never started): the guard exits without
        touching it. Blocking: call it in a thread."""
        with self._lock:
            self._cancelled = True  # a start thread still running starts no guard now
            guard, self._guard = self._guard, None
        if guard is None or guard.stdin is None:
            return
        with contextlib.suppress(OSError):  # BrokenPipeError: the guard is gone already
            guard.stdin.write(GUARD_STAND_DOWN)
            guard.stdin.close()
        try:
            guard.wait(timeout=30)
        except subprocess.TimeoutExpired:
            guard.kill()
            guard.wait()

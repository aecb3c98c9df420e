"""Shell tasks: ``/bin/sh -c <command>`` in its own process group and a throw-away directory.

Spec: ``command`` (str), ``env`` (dict of str). The child gets a minimal environment
(``PATH``, ``HOME`` = its temp dir, ``LANG``), the spec's ``env``, then the ``BATON_*``
variables, which the spec cannot override: ``BATON_RUN_ID``, ``BATON_TASK``,
``BATON_ATTEMPT``, ``BATON_TENANT_ID``, ``BATON_PARAMS`` (JSON), ``BATON_ITEM`` (only for
for_each children: the item itself when it is a string, else JSON) and ``BATON_OUTPUT`` - a
file in the temp dir where the task may write its JSON output.

By default (``policy.sandbox``) the command runs in a sandbox of its own (see
:mod:`worker.sandbox`): own unprivileged uid, namespaces, no view of the worker's files,
processes or environment, egress to public addresses only, resource limits. When the sandbox
is on but cannot work on this machine, shell tasks are refused (reason ``unsupported``) -
never run unsandboxed. Only an operator turns it off (``BATON_WORKER_SANDBOX=false``).

Either way the launched process leads its own session and process group: on cancellation
(the caller's timeout included) the *whole group* - grandchildren too - gets SIGTERM, then
SIGKILL after ``policy.kill_grace_seconds``, and ``CancelledError`` is re-raised (in the
sandbox, the sandbox is torn down with its first process, killing everything in it).
Processes the command leaves behind in its group when it exits normally are terminated the
same way: a task never leaves work running on the worker. The command runs under a small
supervisor (:mod:`worker.sandbox.reaper`) that reports its exact exit status, kills what the
command left running outside the group (``setsid``) when it exits and, if the worker dies,
every process the task started.

stdout/stderr are read from pipes this module owns (not the subprocess transport's), so the
exit is noticed even while a background process still holds them, and they can always be
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable
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
from worker.sandbox.launch import SANDBOX_PATH, SandboxError, start_in_sandbox, start_on_host
from worker.sandbox.probe import unavailable_reason

logger = logging.getLogger(__name__)

SHELL = "/bin/sh"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_CHUNK = 64 * 1024
OUTPUT_FILE = "baton-output.json"
# How long to keep reading after the group is gone, for a process that left the group but
# still holds the pipes (it escaped via setsid); its output past that is not collected.
PIPE_DRAIN_SECONDS = 5.0
_POLL_SECONDS = 0.05
# SIGKILL cannot be ignored, but a process in uninterruptible sleep dies only when it wakes.
KILL_WAIT_SECONDS = 5.0
SANDBOX_UNAVAILABLE = (
    "Shell tasks run only in the sandbox on this worker, and the sandbox is unavailable: "
    "{reason}. Install bubblewrap, slirp4netns and iptables (make sandbox), or set "
    "BATON_WORKER_SANDBOX=false on a worker that runs only trusted tasks."
)


class ShellExecutor:
    """Runs ``shell`` tasks; see the module docstring."""

    def __init__(self, policy: ExecutorPolicy) -> None:
        self.policy = policy

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Run the command; the result carries its exit code and ``BATON_OUTPUT`` JSON."""
        if not self.policy.allow_shell:
            return ExecutionResult.failed(
                "Shell tasks are not allowed on this worker", reason="unsupported"
            )
        try:
            command = require_str(message.spec, "command")
            spec_env = string_env(message.spec)
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))
        if self.policy.sandbox:
            reason = await unavailable_reason()
            if reason is not None:
                return ExecutionResult.failed(
                    SANDBOX_UNAVAILABLE.format(reason=reason), reason="unsupported"
                )

        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="baton-shell-"))
        try:
            return await self._run(message, command, spec_env, workdir, log)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)

    async def _run(
        self,
        message: TaskMessage,
        command: str,
        spec_env: dict[str, str],
        workdir: Path,
        log: LogSink,
    ) -> ExecutionResult:
        output_path = workdir / OUTPUT_FILE
        env = {
            # The worker's PATH may name its virtualenv: meaningless inside the sandbox.
            "PATH": SANDBOX_PATH if self.policy.sandbox else os.environ.get("PATH", DEFAULT_PATH),
            "HOME": str(workdir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **spec_env,
            **baton_env(message),
            "BATON_OUTPUT": str(output_path),
        }
        writer = LogWriter(log, self.policy.max_log_bytes)
        loop = asyncio.get_running_loop()

        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        read_fds = [out_read, err_read]
        argv = [SHELL, "-c", command]
        try:
            if self.policy.sandbox:
                started = await start_in_sandbox(
                    argv, env, workdir, out_write, err_write, self.policy.sandbox_limits
                )
            else:
                started = await start_on_host(argv, env, workdir, out_write, err_write)
        except BaseException as exc:
            for fd in read_fds:
                os.close(fd)
            if isinstance(exc, SandboxError):
                return ExecutionResult.failed(str(exc))
            if isinstance(exc, OSError):
                return ExecutionResult.failed(f"cannot start {SHELL}: {exc}")
            raise
        finally:
            os.close(out_write)
            os.close(err_write)

        proc = started.process
        pgid = proc.pid  # a session leader's process group id is its pid
        logger.info(
            "worker.shell.started",
            extra={"task_run_id": message.task_run_id, "attempt": message.attempt, "pid": pgid},
        )
        pipes = [os.fdopen(fd, "rb", buffering=0) for fd in read_fds]
        transports: list[asyncio.BaseTransport] = []
        pumps: list[asyncio.Task[None]] = []
        progress = _Progress()
        streams: tuple[Stream, Stream] = ("stdout", "stderr")
        try:
            for pipe, stream in zip(pipes, streams, strict=True):
                reader = asyncio.StreamReader()
                transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, reader), pipe
                )
                transports.append(transport)
                splitter = LineSplitter(writer, stream)
                pumps.append(asyncio.create_task(_pump(reader, splitter, progress)))

            await proc.wait()
            returncode = started.returncode()
            if self.policy.sandbox:
                # The kernel kills what is left in the sandbox as it is torn down: let it.
                await _wait_group_gone(pgid, KILL_WAIT_SECONDS)
            if _group_alive(pgid):
                await writer.write(
                    "system", "terminating processes left running in the task's process group"
                )
                await _terminate_group(pgid, self.policy.kill_grace_seconds)
            await _drain(pumps, lambda: progress.read + writer.bytes_written)
        except BaseException:
            # Cancellation (the caller's timeout included) or an unexpected error: nothing
            # the task started may outlive it.
            logger.info(
                "worker.shell.killing",
                extra={"task_run_id": message.task_run_id, "pid": pgid},
            )
            await _kill_and_reap(proc, pgid, self.policy.kill_grace_seconds)
            raise
        finally:
            for pump in pumps:
                pump.cancel()
            for opened in transports:
                opened.close()  # stops watching the fd; closing the file is then safe
            for pipe in pipes:
                pipe.close()
            await started.close()

        logger.info(
            "worker.shell.finished",
            extra={"task_run_id": message.task_run_id, "exit_code": returncode},
        )
        if returncode != 0:
            return ExecutionResult.failed(_describe_exit(returncode), exit_code=returncode)
        return await self._read_output(output_path, returncode)

    async def _read_output(self, path: Path, returncode: int) -> ExecutionResult:
        try:
            raw = await asyncio.to_thread(_read_capped, path, self.policy.max_output_bytes + 1)
        except OSError as exc:
            return ExecutionResult.failed(f"cannot read BATON_OUTPUT: {exc}", exit_code=returncode)
        if raw is None or not raw.strip():
            return ExecutionResult.ok(None, exit_code=returncode)
        if len(raw) > self.policy.max_output_bytes:
            return ExecutionResult.failed(
                f"BATON_OUTPUT exceeds the limit of {self.policy.max_output_bytes} bytes",
                exit_code=returncode,
            )
        try:
            output: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return ExecutionResult.failed(
                f"BATON_OUTPUT is not valid JSON: {exc}", exit_code=returncode
            )
        problem = check_output_size(output, self.policy)
        if problem is not None:
            return ExecutionResult.failed(f"BATON_OUTPUT: {problem}", exit_code=returncode)
        return ExecutionResult.ok(output, exit_code=returncode)


class _Progress:
    """Bytes read from the pipes so far, to tell a slow log sink from a pipe held open."""

    def __init__(self) -> None:
        self.read = 0


async def _pump(reader: asyncio.StreamReader, splitter: LineSplitter, progress: _Progress) -> None:
    while chunk := await reader.read(READ_CHUNK):
        progress.read += len(chunk)
        await splitter.feed(chunk)
    await splitter.close()


async def _drain(pumps: list[asyncio.Task[None]], progress: Callable[[], int]) -> None:
    """Let the pumps reach EOF.

    While they make progress (a slow sink catching up), wait on; once nothing moved for
    :data:`PIPE_DRAIN_SECONDS`, a process outside the group holds the pipes: abandon them.
    """
    pending: set[asyncio.Task[None]] = set(pumps)
    while pending:
        before = progress()
        _, pending = await asyncio.wait(pending, timeout=PIPE_DRAIN_SECONDS)
        if pending and progress() == before:
            logger.warning("worker.shell.pipes_held_open", extra={"pending": len(pending)})
            break
    for pump in pumps:
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            logger.warning("worker.shell.pump_failed", exc_info=pump.exception())


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"exit code {returncode} (killed by {name})"
    return f"exit code {returncode}"


def _read_capped(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the output file; None when the task wrote none.

    The task controls that path: a FIFO would block ``open`` forever and a symlink could
    point anywhere, so only a regular file is read (non-blocking open, links not followed).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return handle.read(limit)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting to be reaped don't count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return True
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..." - comm may contain spaces and parentheses.
        fields = line[line.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


async def _terminate_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds, then SIGKILL whatever is left.

    Returns once no process of the group runs any more (SIGKILL is delivered
    asynchronously), or after :data:`KILL_WAIT_SECONDS` for a process stuck in the kernel.
    """
    _signal_group(pgid, signal.SIGTERM)
    try:
        await _wait_group_gone(pgid, grace)
    finally:
        # Also reached when cancelled again mid-grace: the group dies regardless.
        _signal_group(pgid, signal.SIGKILL)
    if not await _wait_group_gone(pgid, KILL_WAIT_SECONDS):
        logger.warning("worker.shell.group_survived_sigkill", extra={"pgid": pgid})


async def _wait_group_gone(pgid: int, seconds: float) -> bool:
    """Whether the group emptied within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while _group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


async def _kill_and_reap(proc: asyncio.subprocess.Process, pgid: int, grace: float) -> None:
    try:
        await _terminate_group(pgid, grace)
        await proc.wait()
    except asyncio.CancelledError:
        logger.warning("worker.shell.cleanup_interrupted", extra={"pid": pgid})
        raise

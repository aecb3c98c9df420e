"""Real embedded PostgreSQL / Redis servers (no fakes), also when running as root."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.embedded import start_postgres, start_redis, stop_postgres, stop_redis

pytestmark = pytest.mark.embedded


async def _sql(url: str, *statements: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            results = [await conn.execute(text(stmt)) for stmt in statements]
            return [r.scalar() if r.returns_rows else None for r in results]
    finally:
        await engine.dispose()


def _gone(pid: int) -> bool:
    try:
        return bool(
            psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        )  # awaiting reaping by init
    except psutil.NoSuchProcess:
        return True


def test_postgres_runs_real_sql_and_persists(tmp_path: Path) -> None:
    pg = start_postgres(tmp_path)
    try:
        assert pg.url.startswith("postgresql+asyncpg://postgres@/postgres?host=/")
        assert pg.data_dir == (tmp_path / "postgres").resolve()
        assert start_postgres(tmp_path) == pg  # idempotent: reuses the running server
        version, _, _ = asyncio.run(
            _sql(
                pg.url,
                "SELECT version()",
                "CREATE TABLE probe (v text)",
                "INSERT INTO probe VALUES ('kept')",
            )
        )
        assert str(version).startswith("PostgreSQL")
    finally:
        stop_postgres(pg)

    pg = start_postgres(tmp_path)
    try:
        assert asyncio.run(_sql(pg.url, "SELECT v FROM probe")) == ["kept"]
    finally:
        stop_postgres(pg)


def test_redis_set_get_and_stop(tmp_path: Path) -> None:
    server = start_redis(tmp_path, persistent=False)
    assert server.url.startswith("redis://127.0.0.1:")
    assert server.data_dir == (tmp_path / "redis").resolve()

    async def roundtrip() -> tuple[object, int, object]:
        client = aioredis.from_url(server.url)
        try:
            await client.set("baton:probe", "ok")
            value = await client.get("baton:probe")
            info = await client.info("server")
            aof = (await client.config_get("appendonly"))["appendonly"]
            return value, int(info["process_id"]), aof
        finally:
            await client.aclose()

    value, pid, aof = asyncio.run(roundtrip())
    assert value == b"ok"
    assert aof == "no"
    assert start_redis(tmp_path, persistent=False) == server  # a live server on the dir is reused

    stop_redis(server)
    assert _gone(pid)
    assert not (tmp_path / "redis" / "appendonly.aof").exists()


def test_redis_persistent_survives_restart(tmp_path: Path) -> None:
    async def run(url: str, value: str | None = None) -> object:
        client = aioredis.from_url(url)
        try:
            if value is not None:
                await client.set("baton:kept", value)
            return await client.get("baton:kept")
        finally:
            await client.aclose()

    server = start_redis(tmp_path)
    try:
        asyncio.run(run(server.url, "yes"))
    finally:
        stop_redis(server)
    server = start_redis(tmp_path)
    try:
        assert asyncio.run(run(server.url)) == b"yes"
    finally:
        stop_redis(server)


def test_redis_left_over_by_crashed_run_is_adopted(tmp_path: Path) -> None:
    crashed_run = (
        "import os, sys; from pathlib import Path; from backend.core.embedded import start_redis; "
        "print(start_redis(Path(sys.argv[1]), persistent=False).url, flush=True); os._exit(0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", crashed_run, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    orphan_url = out.stdout.strip()
    server = start_redis(tmp_path, persistent=False)  # skipped atexit left it running: reuse it
    assert server.url == orphan_url
    pid = int(json.loads((server.data_dir / "embedded.json").read_text())["pid"])
    stop_redis(server)
    assert _gone(pid)

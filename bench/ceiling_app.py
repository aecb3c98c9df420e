"""The trigger_rate scenario's ceiling: the cheapest endpoint that still commits a row.

A bare ASGI app (no framework, no auth, no validation) served by uvicorn with the
settings ``baton api`` uses (uvloop, httptools): ``POST /api/v1/jobs/{id}/runs`` reads
the body, runs one ``INSERT`` through an asyncpg pool (autocommit: one round trip, one
commit) and answers 201 with the new id. It is not part of Baton; the benchmark starts
it (``uvicorn bench.ceiling_app:app``) to show what one Python API process, this
PostgreSQL and this machine allow at best.

``BATON_BENCH_CEILING_DSN``: the database (the benchmark's throw-away one);
``BATON_BENCH_CEILING_POOL`` (20, like the API's 10 + 10 overflow).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TABLE = """
CREATE TABLE IF NOT EXISTS bench_ceiling (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL,
    params jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = "INSERT INTO bench_ceiling (id, job_id, params) VALUES ($1, $2, $3::jsonb)"

_pool: asyncpg.Pool | None = None


async def _lifespan(receive: Receive, send: Send) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            size = int(os.environ.get("BATON_BENCH_CEILING_POOL", "20"))
            _pool = await asyncpg.create_pool(
                os.environ["BATON_BENCH_CEILING_DSN"], min_size=size, max_size=size
            )
            await _pool.execute(TABLE)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    parts = scope["path"].strip("/").split("/")  # api v1 jobs {id} runs
    if scope["method"] != "POST" or len(parts) != 5 or parts[4] != "runs":
        await _respond(send, 404, b'{"error":"not_found"}')
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        job_id = uuid.UUID(parts[3])
        params = json.loads(body or b"{}").get("params", {})
    except (ValueError, AttributeError):
        await _respond(send, 422, b'{"error":"invalid"}')
        return
    run_id = uuid.uuid4()
    assert _pool is not None
    await _pool.execute(INSERT, run_id, job_id, json.dumps(params))
    await _respond(send, 201, json.dumps({"id": str(run_id)}).encode())

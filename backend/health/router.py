"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backend.core.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """PostgreSQL and Redis both answer; 503 with the failing check otherwise."""
    checks: dict[str, str] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except (SQLAlchemyError, OSError) as error:
        checks["postgres"] = f"error: {type(error).__name__}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as error:
        checks["redis"] = f"error: {type(error).__name__}"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    body = error_body("service_unavailable", "A backing service is not reachable", checks)
    return JSONResponse(body, status_code=503)

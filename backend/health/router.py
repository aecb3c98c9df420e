"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backend.core.errors import error_body
from kernel.dependencies import STATUS, Dependency

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """PostgreSQL and Redis both answer; 503 naming the dependency that does not.

    Each probe also updates the process's dependency status (``baton_dependency_up``,
    ``dependency.down`` / ``dependency.up`` log lines). Connection details never leak:
    a failing check says only the error's type.
    """
    checks: dict[str, str] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        _checked(checks, "postgres", None)
    except (SQLAlchemyError, OSError) as error:
        _checked(checks, "postgres", error)
    try:
        await request.app.state.redis.ping()
        _checked(checks, "redis", None)
    except (RedisError, OSError) as error:
        _checked(checks, "redis", error)
    down = sorted(name for name, check in checks.items() if check != "ok")
    if not down:
        return JSONResponse({"status": "ok", "checks": checks})
    message = f"A backing service is not reachable: {', '.join(down)}"
    return JSONResponse(error_body("service_unavailable", message, checks), status_code=503)


def _checked(checks: dict[str, str], dependency: Dependency, error: Exception | None) -> None:
    if error is None:
        checks[dependency] = "ok"
        STATUS.mark_up(dependency, where="readyz")
    else:
        checks[dependency] = f"error: {type(error).__name__}"
        STATUS.mark_down(dependency, error, where="readyz")

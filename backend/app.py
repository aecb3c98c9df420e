"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import wiring  # noqa: F401  (cross-domain hooks, connected on import)
from backend.accounts.router import public_router as accounts_public_router
from backend.accounts.router import router as accounts_router
from backend.admin.router import router as admin_router
from backend.audit.denied import record_denied
from backend.audit.router import router as audit_router
from backend.audit.sealer import close_sealer, sealer_for
from backend.auth.router import router as auth_router
from backend.auth.service import authenticate
from backend.billing.router import router as billing_router
from backend.billing.router import webhook_router as stripe_webhook_router
from backend.core.db import create_engine, create_sessionmaker
from backend.core.errors import install_error_handlers
from backend.core.input_policy import InputPolicyMiddleware
from backend.core.middleware import RequestMiddleware
from backend.core.openapi import ANY_ROUTE
from backend.core.settings import Process, Settings
from backend.health.router import router as health_router
from backend.jobs.router import router as jobs_router
from backend.live.router import router as events_router
from backend.metrics.http import install_api_metrics
from backend.notify.router import router as notify_router
from backend.plans.router import router as plans_router
from backend.runs.router import router as runs_router
from backend.schedules.router import router as schedules_router
from backend.secrets.router import router as secrets_router
from backend.templates.router import router as templates_router
from backend.tenants.router import router as tenants_router
from backend.tokens.router import router as tokens_router
from backend.triggers.router import hook_router
from backend.triggers.router import router as triggers_router
from backend.web.router import install_dashboard
from backend.workers.router import router as workers_router
from kernel.runtime.redis import create_redis

API_PING_IDLE_SECONDS = 2.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API. Connections are opened in the lifespan, not at import."""
    settings = settings or Settings()
    settings.refuse_unsafe_for(Process.api)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.redis_url is None:
            raise RuntimeError("BATON_REDIS_URL is not set (baton dev starts an embedded one)")
        # No ping per checkout (three round trips on every request's transaction): only a
        # connection idle for a while is tested before use (core.db.create_engine).
        engine = create_engine(
            settings.runtime_database_url(),
            pool_size=settings.db_pool_size,
            pre_ping=False,
            ping_idle_after=API_PING_IDLE_SECONDS,
        )
        redis = create_redis(settings.redis_url)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = redis
        # Seals audit events a crashed process left pending (triggers kick it themselves).
        sweeper = asyncio.create_task(sealer_for(engine).sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await close_sealer(engine)
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Baton",
        version="0.1.0",
        description="Multi-tenant job orchestration API.",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        # FastAPI's native OpenTelemetry hooks look the global providers up on every
        # request (about 8 % of a trigger's CPU in a profile) for providers Baton never
        # installs: its metrics are Prometheus (/metrics) and its traces are logs.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.authenticate = authenticate  # bearer -> principal, for core.deps' Authorized
    install_error_handlers(app, on_denied=record_denied)  # 403/404 go to the audit log
    # The input policy sits inside the request middleware: ids and the body cap apply first.
    app.add_middleware(InputPolicyMiddleware)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_request_bytes)
    for router in (
        health_router,
        auth_router,
        tenants_router,
        tokens_router,
        audit_router,
        admin_router,
        accounts_public_router,
        accounts_router,
        plans_router,
        billing_router,
        stripe_webhook_router,
        runs_router,
        jobs_router,
        templates_router,
        schedules_router,
        secrets_router,
        events_router,
        workers_router,
        triggers_router,
        notify_router,
        hook_router,
    ):
        app.include_router(router, responses=ANY_ROUTE)
    install_dashboard(app, settings)
    # Outermost middleware: request latency includes every other layer.
    app.state.metrics_registry = install_api_metrics(app, token=settings.metrics_token)
    return app

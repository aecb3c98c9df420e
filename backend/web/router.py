"""The web dashboard: its routers, templates, static assets and HTML error pages.

Pages call the same services as the REST API; this package only turns their results into
HTML (``render``), carries the session in cookies (``session``) and checks CSRF tokens on
every form (``csrf``). One module per area of the dashboard.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from backend.core.settings import Settings
from backend.web import (
    account,
    admin,
    audit,
    billing,
    dev,
    gallery,
    jobs,
    notifications,
    public,
    runs,
    secrets,
    settings,
    usage,
    workers,
)
from backend.web.render import DashboardErrors, create_templates, frontend_dir

log = structlog.get_logger(__name__)

# npm packages served under /static/vendor/<name>/ (installed by `make` into node_modules).
VENDOR_PACKAGES = {"htmx": "htmx.org/dist", "htmx-ext-sse": "htmx-ext-sse/dist"}

router = APIRouter(include_in_schema=False)
for area in (
    public.router,
    account.router,
    jobs.router,
    gallery.router,
    runs.router,
    settings.router,
    usage.router,
    billing.router,
    secrets.router,
    notifications.router,
    workers.router,
    audit.router,
    admin.router,
    dev.router,
):
    router.include_router(area)


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from ``app``: pages, static files and HTML error pages."""
    root = frontend_dir(settings)
    app.state.templates = create_templates(settings)
    app.state.html_errors = DashboardErrors()
    for name, path in VENDOR_PACKAGES.items():
        directory = root / "node_modules" / path
        if not directory.is_dir():
            log.warning("web.vendor_missing", package=name, hint="run `make install`")
        app.mount(
            f"/static/vendor/{name}",
            StaticFiles(directory=directory, check_dir=False),
            name=f"vendor-{name}",
        )
    app.mount("/static", StaticFiles(directory=root / "static", check_dir=False), name="static")
    app.include_router(router)

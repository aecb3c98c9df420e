"""Guards on every dashboard route, checked by walking the application's routes.

- Every dashboard page except the public ones needs a browser session (its dependencies
  include ``require_web_principal``), and every state-changing one checks the CSRF token
  (``check_csrf``): adding an unguarded route fails here.
- At run time: without a session a page redirects to /login; without a CSRF token a form
  post is refused with 403 before anything else happens.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from backend.web.csrf import check_csrf
from backend.web.session import require_web_principal
from tests.fixtures.routes import Endpoint, dependency_calls, endpoints
from tests.web.helpers import Browser

PUBLIC_PAGES = {
    ("GET", "/"),
    ("GET", "/signup"),
    ("POST", "/signup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/favicon.ico"),
    # The mailed links' pages: the single-use token is the credential (POSTs check CSRF).
    ("GET", "/verify-email"),
    ("POST", "/verify-email"),
    ("GET", "/forgot-password"),
    ("POST", "/forgot-password"),
    ("GET", "/reset-password"),
    ("POST", "/reset-password"),
    ("GET", "/accept-invitation"),
    ("POST", "/accept-invitation"),
    # Development only, from this machine only (404 otherwise: tests/web/test_dev_mail.py).
    ("GET", "/dev/mail"),
}
NOT_DASHBOARD = ("/api/", "/hooks/", "/static", "/metrics", "/docs", "/redoc", "/openapi.json")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def dashboard_endpoints(app: FastAPI) -> list[Endpoint]:
    return [
        e
        for e in endpoints(app)
        if e.is_api_route
        and not e.path.startswith(NOT_DASHBOARD)
        and e.path not in ("/healthz", "/readyz")
    ]


def depends_on(endpoint: Endpoint, dependency: object) -> bool:
    assert endpoint.dependant is not None
    return any(call is dependency for call in dependency_calls(endpoint.dependant))


def test_the_walk_finds_the_dashboard_pages(app: FastAPI) -> None:
    found = {(e.method, e.path) for e in dashboard_endpoints(app)}
    expected = PUBLIC_PAGES | {
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("GET", "/runs"),
        ("GET", "/runs/{run_id}"),
        ("GET", "/settings/members"),
        ("GET", "/settings/tokens"),
        ("GET", "/settings/secrets"),
        ("POST", "/settings/secrets"),
        ("POST", "/settings/secrets/{secret_name}"),
        ("POST", "/settings/secrets/{secret_name}/delete"),
        ("GET", "/settings/notifications"),
        ("POST", "/settings/notifications/channels"),
        ("POST", "/settings/notifications/channels/{channel_id}/delete"),
        ("POST", "/settings/notifications/rules"),
        ("POST", "/settings/notifications/rules/{rule_id}/delete"),
        ("POST", "/settings/notifications/{channel_id}/test"),
        ("POST", "/jobs/{job_id}/webhooks"),
        ("POST", "/jobs/{job_id}/webhooks/{endpoint_id}/delete"),
        ("GET", "/settings/workers"),
        ("POST", "/settings/workers/credentials"),
        ("GET", "/audit"),
        ("GET", "/admin"),
    }
    assert expected <= found, f"the walk missed {expected - found}"


def test_every_private_page_needs_a_session(app: FastAPI) -> None:
    unguarded = [
        str(e)
        for e in dashboard_endpoints(app)
        if (e.method, e.path) not in PUBLIC_PAGES and not depends_on(e, require_web_principal)
    ]
    assert unguarded == [], f"dashboard routes without a session check: {unguarded}"


def test_every_state_changing_route_checks_csrf(app: FastAPI) -> None:
    unchecked = [
        str(e)
        for e in dashboard_endpoints(app)
        if e.method not in SAFE_METHODS and not depends_on(e, check_csrf)
    ]
    assert unchecked == [], f"dashboard forms without CSRF check: {unchecked}"


def _url(endpoint: Endpoint) -> str:
    return endpoint.url({name: str(uuid.uuid4()) for name in endpoint.params})


async def test_private_pages_redirect_to_login_without_a_session(
    app: FastAPI, anonymous: Browser
) -> None:
    failures = []
    for endpoint in dashboard_endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC_PAGES or endpoint.method != "GET":
            continue
        response = await anonymous.http.get(_url(endpoint))
        if response.status_code != 303 or not response.headers["location"].startswith("/login"):
            failures.append(f"{endpoint}: {response.status_code}")
    assert failures == []


async def test_forms_without_a_csrf_token_are_refused(app: FastAPI, owner_browser: Browser) -> None:
    failures = []
    for endpoint in dashboard_endpoints(app):
        if endpoint.method in SAFE_METHODS:
            continue
        response = await owner_browser.http.request(
            endpoint.method, _url(endpoint), data={"anything": "x"}
        )
        if response.status_code != 403 or "csrf_failed" not in response.text:
            failures.append(f"{endpoint}: {response.status_code}")
    assert failures == []

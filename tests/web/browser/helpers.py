"""Helpers for browser tests: accounts and jobs made through the REST API, form logins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.waiting import eventually_sync

PASSWORD = "correct horse battery staple"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "baton-demo-password"


@dataclass(frozen=True)
class LiveBaton:
    """A running ``baton dev``: its base URL and the file its output goes to."""

    url: str
    log_path: Path


async def signup(page: Any, *, org: str | None = None) -> str:
    """Sign up through the form; returns the new owner's email (the browser is logged in)."""
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    await page.goto("/signup")
    await page.fill("input[name=tenant_name]", org or f"Browser Org {email[8:16]}")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/jobs**")
    return email


@dataclass(frozen=True)
class ApiAccount:
    email: str
    password: str
    tenant_slug: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def create_tenant_via_api(url: str) -> ApiAccount:
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "tenant_name": f"Org {email[6:14]}"}
    response = httpx.post(f"{url}/api/v1/auth/signup", json=body, timeout=30)
    assert response.status_code == 201, response.text
    data = response.json()
    return ApiAccount(email, PASSWORD, data["tenant"]["slug"], data["access_token"])


def create_member_via_api(url: str, owner: ApiAccount, role: str) -> ApiAccount:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = httpx.post(
        f"{url}/api/v1/members",
        json={"email": email, "role": role, "password": PASSWORD},
        headers=owner.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    login = httpx.post(
        f"{url}/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "tenant": owner.tenant_slug},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    return ApiAccount(email, PASSWORD, owner.tenant_slug, login.json()["access_token"])


def create_job_via_api(url: str, account: ApiAccount, spec: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/v1/jobs", json=spec, headers=account.headers, timeout=30)
    assert response.status_code == 201, response.text
    return dict(response.json())


def trigger_via_api(url: str, account: ApiAccount, job_id: str) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/api/v1/jobs/{job_id}/runs", json={}, headers=account.headers, timeout=30
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for_run_via_api(url: str, account: ApiAccount, run_id: str) -> dict[str, Any]:
    return eventually_sync(
        lambda: dict(
            httpx.get(f"{url}/api/v1/runs/{run_id}", headers=account.headers, timeout=30).json()
        ),
        lambda run: run["status"] in ("succeeded", "failed", "cancelled"),
        timeout=60,
        interval=0.2,
        what=f"run {run_id} finishing",
    )


async def log_in(
    page: Any, email: str, password: str = PASSWORD, tenant: str | None = None
) -> None:
    """Log in through the login form and land on the jobs page."""
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    if tenant is not None and await page.locator("input[name=tenant], select[name=tenant]").count():
        await page.locator("[name=tenant]").fill(tenant)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/jobs**")

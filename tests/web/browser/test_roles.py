"""In Chromium: a viewer's restricted view, and the platform admin console."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.web.browser.helpers import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    PASSWORD,
    LiveBaton,
    create_job_via_api,
    create_member_via_api,
    create_tenant_via_api,
    log_in,
    trigger_via_api,
    wait_for_run_via_api,
)


async def test_a_viewer_sees_no_buttons_and_the_server_refuses_anyway(
    page: Any, live_baton: LiveBaton
) -> None:
    owner = create_tenant_via_api(live_baton.url)
    viewer = create_member_via_api(live_baton.url, owner, "viewer")
    job = create_job_via_api(
        live_baton.url,
        owner,
        {"name": "report", "tasks": [{"name": "t", "type": "shell", "command": "echo hi"}]},
    )
    run = trigger_via_api(live_baton.url, owner, job["id"])
    wait_for_run_via_api(live_baton.url, owner, run["id"])

    await log_in(page, viewer.email)
    await page.goto(f"/runs/{run['id']}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "succeeded")
    for action in ("run-cancel", "run-rerun", "run-rerun-failed"):
        await expect(page.get_by_test_id(action)).to_have_count(0)
    await page.goto("/settings/members")
    await expect(page.get_by_test_id("members-table")).to_be_visible()
    await expect(page.get_by_test_id("add-member")).to_have_count(0)
    await expect(page.get_by_test_id("member-remove")).to_have_count(0)
    assert "API tokens" not in await page.locator("header").inner_text()
    assert "Admin" not in await page.locator("header").inner_text()
    # The page's own CSRF token and the viewer's cookies, but a role that may not re-run.
    csrf = await page.locator("meta[name=csrf-token]").get_attribute("content")
    refused = await page.request.post(
        f"/runs/{run['id']}/rerun", form={"csrf_token": csrf}, max_redirects=0
    )
    assert refused.status == 403
    runs = httpx.get(
        f"{live_baton.url}/api/v1/runs", params={"job_id": job["id"]}, headers=owner.headers
    ).json()
    assert len(runs["items"]) == 1, "the refused re-run created nothing"
    assert (await page.request.get("/admin", max_redirects=0)).status == 403


async def test_the_admin_console_suspends_and_resumes_a_tenant(
    page: Any, live_baton: LiveBaton
) -> None:
    tenant = create_tenant_via_api(live_baton.url)
    await log_in(page, DEMO_EMAIL, DEMO_PASSWORD)
    await page.goto("/admin")
    await expect(page.get_by_test_id("health")).to_be_visible()
    await expect(page.get_by_test_id("health-worker-count")).not_to_have_text("0")
    row = page.locator(f"[data-testid=tenant-row][data-slug='{tenant.tenant_slug}']")
    if await row.count() == 0:  # newest first; the tenant may be on a later page in a long run
        await page.goto(f"/admin?slug={tenant.tenant_slug}")
    page.on("dialog", lambda dialog: dialog.accept())
    await row.get_by_test_id("tenant-suspend").click()
    await expect(row).to_have_attribute("data-status", "suspended")
    refused = httpx.post(
        f"{live_baton.url}/api/v1/auth/login",
        json={"email": tenant.email, "password": PASSWORD},
    )
    assert refused.status_code == 403
    await row.get_by_test_id("tenant-resume").click()
    await expect(row).to_have_attribute("data-status", "active")
    allowed = httpx.post(
        f"{live_baton.url}/api/v1/auth/login",
        json={"email": tenant.email, "password": PASSWORD},
    )
    assert allowed.status_code == 200

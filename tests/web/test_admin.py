"""The admin console (/admin): superusers only; tenants with usage and state, suspend and
resume, platform health."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import unquote, urlencode

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import (
    Account,
    bearer,
    create_api_token,
    create_member,
    create_tenant,
)
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from tests.web.helpers import Browser, BrowserFactory
from worker.runner import Worker

ADMIN = "/admin"
HEALTH = "/admin/health"


def suspend(tenant_id: uuid.UUID | str) -> str:
    return f"/admin/tenants/{tenant_id}/suspend"


def resume(tenant_id: uuid.UUID | str) -> str:
    return f"/admin/tenants/{tenant_id}/resume"


def tenant_row(html: str, account: Account) -> str:
    """The console's table row of ``account``'s tenant."""
    assert f'data-tenant-id="{account.tenant_id}"' in html, "tenant not listed"
    return html.split(f'data-tenant-id="{account.tenant_id}"', 1)[1].split("</tr>", 1)[0]


def cell(row: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">([^<]*)<', row)
    assert match, f"no {testid} in {row}"
    return match.group(1).strip()


async def tenant_status(client: AsyncClient, account: Account) -> str:
    """The tenant's state, as the superuser API lists it (any superuser will do)."""
    response = await client.get("/api/v1/me", headers=account.headers)
    if response.status_code == 403:
        assert response.json()["error"]["code"] == "tenant_suspended"
        return "suspended"
    assert response.status_code == 200, response.text
    return str(response.json()["tenant"]["status"])


@pytest.fixture
async def admin_browser(create_browser: BrowserFactory, superuser: Account) -> Browser:
    return await create_browser(superuser)


async def test_console_needs_a_session(anonymous: Browser, owner: Account) -> None:
    for response in (
        await anonymous.get(ADMIN),
        await anonymous.get(HEALTH),
        await anonymous.post(suspend(owner.tenant_id)),
        await anonymous.post(resume(owner.tenant_id)),
    ):
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_tenant_roles_are_not_platform_admins(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    create_browser: BrowserFactory,
    role: str,
) -> None:
    account = owner if role == "owner" else await create_member(client, owner, role)
    browser = await create_browser(account)
    for path in (ADMIN, HEALTH):
        response = await browser.get(path)
        assert response.status_code == 403, response.text
        assert "Platform administrators only" in response.text
    assert (await browser.post(suspend(stranger.tenant_id))).status_code == 403
    assert (await browser.post(resume(stranger.tenant_id))).status_code == 403
    assert await tenant_status(client, stranger) == "active"
    nav = await browser.get("/settings/members")
    assert 'href="/admin"' not in nav.text


async def test_console_lists_tenants_with_their_state(
    admin_browser: Browser, superuser: Account, owner: Account, stranger: Account
) -> None:
    response = await admin_browser.get(ADMIN)
    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-testid="tenants-table"' in html and 'href="/admin"' in html
    for account in (owner, stranger):
        row = tenant_row(html, account)
        assert account.tenant_slug in row and "free" in row
        assert cell(row, "tenant-status") == "active"
        assert 'data-testid="tenant-suspend"' in row
    own = tenant_row(html, superuser)
    assert "your tenant" in own and 'data-testid="tenant-suspend"' not in own


async def test_usage_counts_jobs_recent_runs_and_running_tasks(
    client: AsyncClient,
    admin_browser: Browser,
    owner: Account,
    running_worker: Worker,
    tmp_path: Path,
) -> None:
    idle = await create_job(client, owner, [python_task("noop")])
    never = str(tmp_path / "never")  # the task runs until it is cancelled
    busy = await create_job(
        client,
        owner,
        [python_task("hold", "tests.runs.tasks:wait_for_file", kwargs={"path": never})],
    )
    await trigger(client, owner, idle["id"], delay_seconds=3600)
    run = await trigger(client, owner, busy["id"])
    await wait_for_run(client, owner, run["id"], statuses={"running"})

    async def owner_row() -> str:
        return tenant_row((await admin_browser.get(ADMIN)).text, owner)

    row = await eventually(
        owner_row,
        lambda row: cell(row, "tenant-running-tasks") == "1",
        what="the console counting the running task",
    )
    assert cell(row, "tenant-jobs") == "2"
    assert cell(row, "tenant-runs-24h") == "2"
    assert cell(row, "tenant-running-tasks") == "1"
    await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    await wait_for_run(client, owner, run["id"])
    row = tenant_row((await admin_browser.get(ADMIN)).text, owner)
    assert cell(row, "tenant-running-tasks") == "0"


async def test_health_shows_workers_and_queue_depth(
    client: AsyncClient,
    admin_browser: Browser,
    owner: Account,
    parked_queue: str,
    running_worker: Worker,
) -> None:
    job = await create_job(client, owner, [python_task("noop")], queue=parked_queue)
    runs = [await trigger(client, owner, job["id"]) for _ in range(3)]

    async def health_html() -> str:
        return (await admin_browser.get(HEALTH)).text

    def queue_row(html: str) -> str:
        return html.split(f'data-queue="{parked_queue}"', 1)[1].split("</tr>", 1)[0]

    def shows_all(html: str) -> bool:
        return (
            f'data-queue="{parked_queue}"' in html
            and 'data-worker="worker-test"' in html
            and cell(queue_row(html), "queue-depth") == "3"
        )

    html = await eventually(
        health_html, shows_all, what="health showing the parked queue and the worker"
    )
    row = queue_row(html)
    assert cell(row, "queue-pending") == "0"
    worker = html.split('data-worker="worker-test"', 1)[1].split("</tr>", 1)[0]
    assert "default" in worker and "/ 8" in worker
    assert int(cell(html, "health-worker-count")) >= 1
    assert int(cell(html, "health-queue-depth")) >= 3
    page = await admin_browser.get(ADMIN)
    assert 'hx-get="/admin/health"' in page.text and 'data-worker="worker-test"' in page.text
    for run in runs:
        await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_suspend_locks_the_tenant_out_and_resume_lets_it_back(
    client: AsyncClient,
    admin_browser: Browser,
    owner: Account,
    owner_browser: Browser,
    create_browser: BrowserFactory,
) -> None:
    token = (await create_api_token(client, owner, "viewer"))["token"]
    response = await admin_browser.post(suspend(owner.tenant_id))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin?notice=tenant-suspended"
    page = (await admin_browser.get(response.headers["location"])).text
    assert "Tenant suspended" in page
    row = tenant_row(page, owner)
    assert cell(row, "tenant-status") == "suspended"
    assert 'data-testid="tenant-resume"' in row and 'data-testid="tenant-suspend"' not in row

    # The owner's open dashboard session, a fresh login and the API are all refused.
    # The open session ends (its cookies are cleared) and logging in again says why.
    refused = await owner_browser.get("/settings/members")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert "baton_access" not in owner_browser.http.cookies
    fresh = await create_browser()
    login = await fresh.post("/login", {"email": owner.email, "password": owner.password})
    assert login.status_code == 403 and "suspended" in login.text
    assert "baton_access" not in fresh.http.cookies
    for headers in (owner.headers, bearer(token)):
        api = await client.get("/api/v1/me", headers=headers)
        assert api.json()["error"]["code"] == "tenant_suspended"

    resumed = await admin_browser.post(resume(owner.tenant_id))
    assert resumed.status_code == 303
    assert resumed.headers["location"] == "/admin?notice=tenant-resumed"
    # The suspended session stays ended; a new login works again.
    assert (await owner_browser.get("/settings/members")).status_code == 303
    login = await fresh.post("/login", {"email": owner.email, "password": owner.password})
    assert login.status_code == 303
    assert (await fresh.get("/settings/members")).status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    audit = await client.get("/api/v1/audit", params={"action": "tenant"}, headers=owner.headers)
    actions = [e["action"] for e in audit.json()["items"]]
    assert actions[:2] == ["tenant.resumed", "tenant.suspended"]


async def test_console_pages_and_actions_return_to_the_same_page(
    client: AsyncClient, admin_browser: Browser, owner: Account, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM tenants"))).scalar_one()
    for _ in range(51 - count):
        await create_tenant(client)  # more than one page (50) of tenants
    first = (await admin_browser.get(ADMIN)).text
    match = re.search(r'href="/admin\?cursor=([^"]+)"', first)
    assert match, "no next page link"
    cursor = unquote(match.group(1))
    second = (await admin_browser.get(ADMIN, params={"cursor": cursor})).text
    # Tenant rows only: the health panel's lease rows name tenants too, on every page.
    row_id = r'data-testid="tenant-row" data-tenant-id="([^"]+)"'
    first_ids = set(re.findall(row_id, first))
    second_ids = set(re.findall(row_id, second))
    assert second_ids and not first_ids & second_ids
    response = await admin_browser.post(suspend(owner.tenant_id), {"cursor": cursor})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin?" + urlencode(
        {"notice": "tenant-suspended", "cursor": cursor}
    )
    await admin_browser.post(resume(owner.tenant_id))


async def test_suspend_and_resume_refusals(
    client: AsyncClient, admin_browser: Browser, superuser: Account, owner: Account
) -> None:
    for path in (suspend(uuid.uuid4()), resume(uuid.uuid4())):
        response = await admin_browser.post(path)
        assert response.status_code == 404 and "Tenant not found" in response.text
    assert (await admin_browser.post(suspend("not-a-uuid"))).status_code == 422
    own = await admin_browser.post(suspend(superuser.tenant_id))
    assert own.status_code == 409 and "lock you out" in own.text
    assert (await admin_browser.get(ADMIN)).status_code == 200  # still logged in
    # Without the CSRF token nothing happens.
    for path in (suspend(owner.tenant_id), resume(owner.tenant_id)):
        forged = await admin_browser.http.post(path)
        assert forged.status_code == 403 and "csrf_failed" in forged.text
    assert await tenant_status(client, owner) == "active"


async def test_suspend_over_htmx_and_a_bad_cursor(
    client: AsyncClient, admin_browser: Browser, owner: Account
) -> None:
    await admin_browser.get(ADMIN)
    response = await admin_browser.htmx("POST", suspend(owner.tenant_id))
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/admin?notice=tenant-suspended"
    assert await tenant_status(client, owner) == "suspended"
    await admin_browser.post(resume(owner.tenant_id))
    bad = await admin_browser.get(ADMIN, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and "Invalid cursor" in bad.text

"""The usage page (/settings/usage): the month's usage against the plan's limits."""

from __future__ import annotations

from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task, trigger
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

USAGE = "/settings/usage"


async def test_usage_page_needs_a_session(anonymous: Browser) -> None:
    assert_login_redirect(await anonymous.get(USAGE))


async def test_a_viewer_sees_a_bar_per_limit(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    await trigger(client, owner, job["id"], delay_seconds=3600)
    viewer = await create_member(client, owner, "viewer")
    browser = await create_browser(viewer)
    html = assert_page(await browser.get(USAGE))
    assert 'data-testid="usage-plan">free<' in html
    for limit in ("runs_per_month", "task_seconds_per_month", "members", "scheduled_jobs"):
        assert f'data-limit="{limit}"' in html
    assert html.count('data-testid="usage-bar"') == 4
    assert 'href="/settings/usage"' in html  # in the navigation


async def test_usage_page_bad_month(owner_browser: Browser) -> None:
    response = await owner_browser.get(f"{USAGE}?month=2026-13")
    assert response.status_code == 422

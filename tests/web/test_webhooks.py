"""The job page shows the job's webhooks and their latest deliveries, refused ones with
why; the notifications page shows channels, the log and the test button; another
tenant sees nothing of them."""

from __future__ import annotations

import uuid

from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task
from tests.triggers.helpers import create_webhook
from tests.web.helpers import BrowserFactory, assert_page


async def test_the_job_page_lists_webhooks_and_deliveries(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [python_task("noop")], concurrency_policy="forbid")
    hook = await create_webhook(client, owner, job["id"], name="ci-push", mapping={"s": "$.a"})
    accepted = await client.post(hook["url"], json={"a": 1})
    assert accepted.status_code == 201
    assert (await client.post(hook["url"], json={"a": 2})).status_code == 409

    html = assert_page(await (await create_browser(owner)).get(f"/jobs/{job['id']}"))
    assert 'data-testid="job-webhooks"' in html
    assert html.count('data-testid="webhook-row"') == 1
    assert "ci-push" in html and hook["token_prefix"] in html and "s ← $.a" in html
    assert hook["token"] not in html
    assert 'data-outcome="accepted"' in html and 'data-outcome="refused"' in html
    assert accepted.json()["run_id"] in html
    assert "forbids concurrent runs" in html

    other = await (await create_browser(stranger)).get(f"/jobs/{job['id']}")
    assert other.status_code == 404 and "ci-push" not in other.text


async def test_the_notifications_page_and_its_test_button(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    name = f"HOOK_{uuid.uuid4().hex[:8].upper()}"
    await client.post(
        "/api/v1/secrets", json={"name": name, "value": "http://127.0.0.1:9/x"},
        headers=owner.headers,
    )  # fmt: skip
    channel = await client.post(
        "/api/v1/notification-channels",
        json={"name": "team-chat", "kind": "slack", "url_secret": name},
        headers=owner.headers,
    )
    assert channel.status_code == 201, channel.text
    browser = await create_browser(owner)
    html = assert_page(await browser.get("/settings/notifications"))
    assert "team-chat" in html and 'data-testid="channel-test"' in html
    assert "http://127.0.0.1:9/x" not in html  # the URL is a secret: only its name shows
    # The test button: the loopback address is refused by the egress guard, and logged.
    tested = await browser.post(
        f"/settings/notifications/{channel.json()['id']}/test", data={}, follow_redirects=True
    )
    html = assert_page(tested)
    assert "Test notification: failed" in html
    assert 'data-status="failed"' in html and "loopback" in html

    theirs = await create_browser(stranger)
    assert "team-chat" not in assert_page(await theirs.get("/settings/notifications"))
    other = await theirs.post(f"/settings/notifications/{channel.json()['id']}/test", data={})
    assert other.status_code == 404
    viewer = await create_browser(await create_member(client, owner, "viewer"))
    assert 'data-testid="channel-test"' not in assert_page(
        await viewer.get("/settings/notifications")
    )
    denied = await viewer.post(f"/settings/notifications/{channel.json()['id']}/test", data={})
    assert denied.status_code == 403

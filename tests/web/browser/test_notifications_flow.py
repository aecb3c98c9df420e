"""In Chromium: an owner adds a signed-webhook channel (its URL and signing key chosen from
the tenant's secrets) and a rule through the notifications page, then presses the channel's
test button; the receiver (in this process) gets the test notification and checks its
signature as docs/notifications.md tells receivers to."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from tests.fixtures.waiting import eventually
from tests.notify.receiver import receiving
from tests.web.browser.helpers import (
    ApiAccount,
    LiveBaton,
    create_job_via_api,
    create_tenant_via_api,
    log_in,
)


def _secret(live_baton: LiveBaton, owner: ApiAccount, name: str, value: str) -> None:
    response = httpx.post(
        f"{live_baton.url}/api/v1/secrets",
        json={"name": name, "value": value},
        headers=owner.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text


async def test_create_a_channel_and_a_rule_and_send_a_test(
    page: Any, live_baton: LiveBaton
) -> None:
    owner = create_tenant_via_api(live_baton.url)
    job = create_job_via_api(
        live_baton.url,
        owner,
        {"name": "nightly", "tasks": [{"name": "a", "type": "shell", "command": "true"}]},
    )
    with receiving(f"key-{uuid.uuid4().hex}") as receiver:
        _secret(live_baton, owner, "OPS_HOOK_URL", receiver.url)
        _secret(live_baton, owner, "OPS_HOOK_KEY", receiver.secret)
        await log_in(page, owner.email, owner.password)
        await page.get_by_role("link", name="Notifications").click()
        await expect(page.get_by_test_id("channels-empty")).to_be_visible()

        await page.get_by_test_id("channel-name").fill("ops hook")
        await page.get_by_test_id("channel-kind").select_option("webhook")
        await page.get_by_test_id("channel-url-secret").select_option("OPS_HOOK_URL")
        await page.get_by_test_id("channel-signing-secret").select_option("OPS_HOOK_KEY")
        await page.get_by_test_id("create-channel-submit").click()
        await expect(page.get_by_role("alert")).to_contain_text("Channel created")
        await expect(page.get_by_test_id("channel-row")).to_have_count(1)
        await expect(page.get_by_test_id("channel-row")).to_contain_text("ops hook")
        await expect(page.get_by_test_id("channel-row")).not_to_contain_text(receiver.url)

        await page.get_by_test_id("rule-job").select_option(label="nightly")
        await page.get_by_test_id("rule-event-quota_cancelled").check()
        await page.get_by_test_id("create-rule-submit").click()
        await expect(page.get_by_role("alert")).to_contain_text("Rule created")
        rule = page.get_by_test_id("rule-row")
        await expect(rule).to_have_count(1)
        await expect(rule).to_contain_text("nightly")
        await expect(rule).to_contain_text("failure, quota_cancelled")

        await page.get_by_test_id("channel-test").click()
        await expect(page.get_by_test_id("test-result")).to_have_text("Test notification: sent.")
        await expect(page.get_by_test_id("notification-row")).to_have_attribute(
            "data-status", "sent"
        )
        [post] = await eventually(lambda: receiver.received, what="the test notification")
    assert post["verified"] is True and post["event"] == "test"
    rules = httpx.get(
        f"{live_baton.url}/api/v1/notification-rules", headers=owner.headers, timeout=30
    ).json()
    assert [(r["job_id"], r["events"]) for r in rules] == [
        (job["id"], ["failure", "quota_cancelled"])
    ]

"""In Chromium: a user picks a template from the gallery, fills the form generated from its
parameter schema (a mistake first), and gets the job."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import expect

from tests.web.browser.helpers import signup


async def test_create_a_job_from_the_gallery(page: Any) -> None:
    await signup(page)
    await page.get_by_role("link", name="Templates").click()
    await expect(page.get_by_test_id("template-row")).to_have_count(10)
    await page.locator("[data-template-name=cleanup-old-files] [data-testid=template-link]").click()

    name = f"cleanup-{uuid.uuid4().hex[:6]}"
    days = page.locator("[data-param=days]")
    await expect(days).to_have_value("30")  # the schema's default
    await page.get_by_test_id("template-job-name").fill(name)
    await page.locator("[data-param=directory]").fill("/tmp/exports")
    await days.fill("a week")
    await page.get_by_test_id("template-create-button").click()
    await expect(page.get_by_test_id("template-error").first).to_contain_text(
        "params.days: must be of type integer"
    )
    await expect(page.locator("[data-param=days]")).to_have_value("a week")

    await page.locator("[data-param=days]").fill("7")
    await page.get_by_test_id("template-create-button").click()
    await expect(page.get_by_test_id("job-name")).to_have_text(name)
    await expect(page.get_by_test_id("job-spec-yaml")).to_contain_text("-mtime +7")

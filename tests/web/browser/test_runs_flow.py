"""In Chromium: a failing DAG re-run from its failure; cancelling a long run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.web.browser.helpers import (
    LiveBaton,
    create_job_via_api,
    create_tenant_via_api,
    log_in,
    trigger_via_api,
    wait_for_run_via_api,
)


async def test_a_failing_dag_is_rerun_from_its_failure(
    page: Any, live_baton: LiveBaton, tmp_path: Path
) -> None:
    owner = create_tenant_via_api(live_baton.url)
    marker = tmp_path / f"flaky-{uuid.uuid4().hex}"
    # Fails the first time (no marker yet), succeeds when re-run.
    flaky = f"test -f {marker} || {{ touch {marker}; echo 'first try fails' >&2; exit 3; }}"
    job = create_job_via_api(
        live_baton.url,
        owner,
        {
            "name": "billing-sync",
            "tasks": [
                {"name": "fetch", "type": "shell", "command": "echo fetched"},
                {"name": "reconcile", "type": "shell", "command": flaky, "depends_on": ["fetch"]},
                {
                    "name": "publish",
                    "type": "shell",
                    "command": "echo ok",
                    "depends_on": ["reconcile"],
                },
            ],
        },
    )
    run = trigger_via_api(live_baton.url, owner, job["id"])
    assert wait_for_run_via_api(live_baton.url, owner, run["id"])["status"] == "failed"

    await log_in(page, owner.email)
    await page.goto(f"/runs/{run['id']}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")
    await expect(page.get_by_test_id("task-row-reconcile")).to_have_attribute(
        "data-status", "failed"
    )
    await expect(page.get_by_test_id("task-row-publish")).to_have_attribute(
        "data-status", "upstream_failed"
    )
    await expect(
        page.locator("[data-testid=run-dag] g.node[data-task=reconcile]")
    ).to_have_attribute("data-status", "failed")
    await page.get_by_test_id("run-rerun-failed").click()
    await page.wait_for_url(lambda url: run["id"] not in url and "/runs/" in url)
    # The new run finishes live on the page: no reload.
    await expect(page.get_by_test_id("run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=30_000
    )
    await expect(page.get_by_test_id("task-row-publish")).to_have_attribute(
        "data-status", "succeeded"
    )
    await expect(page.get_by_test_id("run-rerun-of")).to_be_visible()


async def test_cancel_a_long_running_run(page: Any, live_baton: LiveBaton) -> None:
    owner = create_tenant_via_api(live_baton.url)
    job = create_job_via_api(
        live_baton.url,
        owner,
        {"name": "long", "tasks": [{"name": "sleep", "type": "shell", "command": "sleep 120"}]},
    )
    run = trigger_via_api(live_baton.url, owner, job["id"])
    await log_in(page, owner.email)
    await page.goto(f"/runs/{run['id']}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute(
        "data-status", "running", timeout=30_000
    )
    await page.get_by_test_id("run-cancel").click()
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "cancelled")
    await expect(page.get_by_test_id("run-cancel")).to_have_count(0)

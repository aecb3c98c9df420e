"""In Chromium: a new user signs up, writes a job, triggers it, watches it succeed live and
reads its logs - the path a first-time user takes, without reading any docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.web.browser.helpers import signup

# A task's shell loop that waits (polling every 0.05 s, 60 s at most) until the test creates
# the marker file: the task cannot end before the test has seen what it waits to see.
HOLD = "for i in $(seq 1200); do [ -e {marker} ] && break; sleep 0.05; done"

JOB_YAML = """\
name: hello-pipeline
tasks:
  - name: extract
    type: shell
    command: "echo extracting part 1; {hold}; echo extracting part 2; echo extracting part 3"
  - name: report
    type: shell
    command: "echo report with $BATON_PARAMS"
    depends_on: [extract]
"""

# htmx marks the element that sent a request, and a swapped target until it has settled
# (the new content's hx- attributes are processed by then).
HTMX_IDLE = "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"


async def test_signup_create_trigger_watch_and_read_logs(page: Any, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    job_yaml = JOB_YAML.format(hold=HOLD.format(marker=marker))
    await signup(page)
    await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    await page.get_by_test_id("new-job-button").click()

    # A mistake first: the error is shown at its line, and what was typed is kept.
    await page.get_by_test_id("spec-textarea").fill(
        job_yaml.replace("depends_on: [extract]", "depends_on: [nope]")
    )
    await page.get_by_test_id("save-job-button").click()
    await expect(page.get_by_test_id("spec-error").first).to_have_attribute("data-line", "9")
    await expect(page.get_by_test_id("spec-textarea")).to_have_value(
        job_yaml.replace("depends_on: [extract]", "depends_on: [nope]")
    )

    await page.get_by_test_id("spec-textarea").fill(job_yaml)
    await page.get_by_test_id("save-job-button").click()
    await expect(page.get_by_test_id("job-name")).to_have_text("hello-pipeline")
    await expect(page.locator("[data-testid=job-dag] g.node")).to_have_count(2)

    await page.get_by_test_id("trigger-params").fill("day: monday")
    await page.get_by_test_id("trigger-button").click()
    await page.wait_for_url("**/runs/**")

    # Live: the page was loaded while the run was queued or running; it turns green over SSE.
    # The extract task holds until the page has shown it running.
    status = page.get_by_test_id("run-status")
    try:
        await expect(status).to_have_attribute("data-status", "running", timeout=20_000)
    finally:
        marker.touch()
    await expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    await expect(page.locator("[data-testid=run-dag] g.node[data-task=report]")).to_have_attribute(
        "data-status", "succeeded"
    )

    async with page.expect_response("**/tasks/extract/logs"):
        await page.get_by_test_id("log-tab-extract").click()
    await expect(page.get_by_test_id("log-pane")).to_have_attribute("data-task", "extract")
    await expect(page.get_by_test_id("log-line")).to_have_count(3)
    await expect(page.get_by_test_id("log-lines")).to_contain_text("extracting part 3")
    await page.wait_for_function(HTMX_IDLE)  # the swapped pane's tabs are live
    async with page.expect_response("**/tasks/report/logs"):
        await page.get_by_test_id("log-tab-report").click()
    await expect(page.get_by_test_id("log-pane")).to_have_attribute("data-task", "report")
    await expect(page.get_by_test_id("log-lines")).to_contain_text('report with {"day":"monday"}')


async def test_log_lines_stream_while_the_task_runs(page: Any, tmp_path: Path) -> None:
    marker = tmp_path / "go"  # the task prints its last lines only once line 2 was shown
    hold = HOLD.format(marker=marker)
    await signup(page)
    await page.goto("/jobs/new")
    await page.get_by_test_id("spec-textarea").fill(
        "name: slow-printer\ntasks:\n  - name: print\n    type: shell\n"
        f'    command: "echo line 1; echo line 2; {hold}; '
        'for i in 3 4 5 6; do echo line $i; done"\n'
    )
    await page.get_by_test_id("save-job-button").click()
    await page.get_by_test_id("trigger-button").click()
    await page.wait_for_url("**/runs/**")
    lines = page.get_by_test_id("log-lines")
    try:
        await expect(lines).to_contain_text("line 2", timeout=20_000)
        # Seen before the task ended: the run is still running while the lines arrive.
        await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "running")
    finally:
        marker.touch()
    await expect(lines).to_contain_text("line 6", timeout=20_000)
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "succeeded")

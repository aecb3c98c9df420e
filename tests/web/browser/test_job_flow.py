"""In Chromium: a new user signs up, writes a job, triggers it, watches it succeed live and
reads its logs - the path a first-time user takes, without reading any docs."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.web.browser.test_public_flow import signup

JOB_YAML = """\
name: hello-pipeline
tasks:
  - name: extract
    type: shell
    command: "for i in 1 2 3; do echo extracting part $i; sleep 1; done"
  - name: report
    type: shell
    command: "echo report with $BATON_PARAMS"
    depends_on: [extract]
"""


def test_signup_create_trigger_watch_and_read_logs(page: Any) -> None:
    signup(page)
    expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    page.get_by_test_id("new-job-button").click()

    # A mistake first: the error is shown at its line, and what was typed is kept.
    page.get_by_test_id("spec-textarea").fill(
        JOB_YAML.replace("depends_on: [extract]", "depends_on: [nope]")
    )
    page.get_by_test_id("save-job-button").click()
    expect(page.get_by_test_id("spec-error").first).to_have_attribute("data-line", "9")
    expect(page.get_by_test_id("spec-textarea")).to_have_value(
        JOB_YAML.replace("depends_on: [extract]", "depends_on: [nope]")
    )

    page.get_by_test_id("spec-textarea").fill(JOB_YAML)
    page.get_by_test_id("save-job-button").click()
    expect(page.get_by_test_id("job-name")).to_have_text("hello-pipeline")
    expect(page.locator("[data-testid=job-dag] g.node")).to_have_count(2)

    page.get_by_test_id("trigger-params").fill("day: monday")
    page.get_by_test_id("trigger-button").click()
    page.wait_for_url("**/runs/**")

    # Live: the page was loaded while the run was queued or running; it turns green over SSE.
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "running", timeout=20_000)
    expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(page.locator("[data-testid=run-dag] g.node[data-task=report]")).to_have_attribute(
        "data-status", "succeeded"
    )

    with page.expect_response("**/tasks/extract/logs"):
        page.get_by_test_id("log-tab-extract").click()
    expect(page.get_by_test_id("log-pane")).to_have_attribute("data-task", "extract")
    expect(page.get_by_test_id("log-line")).to_have_count(3)
    expect(page.get_by_test_id("log-lines")).to_contain_text("extracting part 3")
    page.wait_for_timeout(100)  # let htmx settle the swapped pane before the next click
    with page.expect_response("**/tasks/report/logs"):
        page.get_by_test_id("log-tab-report").click()
    expect(page.get_by_test_id("log-pane")).to_have_attribute("data-task", "report")
    expect(page.get_by_test_id("log-lines")).to_contain_text('report with {"day":"monday"}')


def test_log_lines_stream_while_the_task_runs(page: Any) -> None:
    signup(page)
    page.goto("/jobs/new")
    page.get_by_test_id("spec-textarea").fill(
        "name: slow-printer\ntasks:\n  - name: print\n    type: shell\n"
        '    command: "for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done"\n'
    )
    page.get_by_test_id("save-job-button").click()
    page.get_by_test_id("trigger-button").click()
    page.wait_for_url("**/runs/**")
    lines = page.get_by_test_id("log-lines")
    expect(lines).to_contain_text("line 2", timeout=20_000)
    # Seen before the task ended: the run is still running while the lines arrive.
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "running")
    expect(lines).to_contain_text("line 6", timeout=20_000)
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "succeeded")

"""Runs pages: the list and its filters, the run page (DAG, tasks, attempts, logs), its
actions (cancel, re-run, re-run from failure) and its live streams, on a real engine and
worker."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.runs.factories import (
    create_job,
    python_task,
    shell_task,
    task_of,
    trigger,
    wait_for_run,
)
from tests.web.helpers import Browser, BrowserFactory

pytestmark = pytest.mark.usefixtures("running_worker")

Frames = list[dict[str, str]]


# ------------------------------------------------------------------------------ helpers


async def read_stream(
    server: str,
    browser: Browser,
    path: str,
    *,
    until: Callable[[Frames], bool] = lambda frames: False,
    seconds: float = 20,
) -> tuple[Frames, bool]:
    """SSE frames of ``path`` fetched with ``browser``'s cookies, until ``until(frames)``,
    the server closes the stream, or ``seconds`` pass; and whether the server closed it."""
    cookies = "; ".join(f"{name}={value}" for name, value in browser.http.cookies.items())
    frames: Frames = []
    async with AsyncClient(base_url=server, timeout=seconds) as http:
        try:
            async with asyncio.timeout(seconds):
                async with http.stream("GET", path, headers={"Cookie": cookies}) as response:
                    assert response.status_code == 200, await response.aread()
                    assert response.headers["content-type"].startswith("text/event-stream")
                    frame: dict[str, str] = {}
                    async for line in response.aiter_lines():
                        if line == "":
                            if "data" in frame:
                                frames.append(frame)
                                if until(frames):
                                    return frames, False
                            frame = {}
                        elif not line.startswith(":") and ":" in line:
                            key, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            frame[key] = frame[key] + "\n" + value if key in frame else value
                    return frames, True
        except TimeoutError:
            return frames, False


def run_status(html: str) -> str:
    match = re.search(r'data-testid="run-status" data-status="([a-z_]+)"', html)
    assert match, "no run status badge"
    return match.group(1)


def node_status(html: str, task: str) -> str:
    match = re.search(rf'class="node" data-task="{re.escape(task)}" data-status="([a-z_]*)"', html)
    assert match, f"no DAG node {task}"
    return match.group(1)


def task_row_status(html: str, task: str) -> str:
    pattern = rf'data-testid="task-row-{re.escape(task)}" data-task="[^"]+" data-status="([a-z_]+)"'
    match = re.search(pattern, html)
    assert match, f"no task row {task}"
    return match.group(1)


def log_texts(html: str) -> list[str]:
    return re.findall(r'<span class="log-text">(.*?)</span>', html)


def listed_run_ids(html: str) -> list[str]:
    return re.findall(r'data-testid="run-row" data-run-id="([0-9a-f-]+)"', html)


async def api_run(client: AsyncClient, owner: Account, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def runs_of_job(client: AsyncClient, owner: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/runs?job_id={job_id}", headers=owner.headers)
    return list(response.json()["items"])


async def failing_dag(client: AsyncClient, owner: Account) -> dict[str, Any]:
    """prepare (succeeds) -> load (exits 3) -> report (upstream_failed)."""
    return await create_job(
        client,
        owner,
        [
            shell_task("prepare", "echo prepared"),
            shell_task(
                "load", "echo loading; echo 'disk <full>' >&2; exit 3", depends_on=["prepare"]
            ),
            python_task("report", depends_on=["load"]),
        ],
    )


async def long_run(client: AsyncClient, owner: Account) -> tuple[dict[str, Any], dict[str, Any]]:
    job = await create_job(client, owner, [shell_task("wait", "echo waiting; sleep 30")])
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"], statuses={"running"})
    return job, run


# ------------------------------------------------------------------------------- the list


async def test_run_list_says_how_far_back_history_goes(owner_browser: Browser) -> None:
    page = await owner_browser.get("/runs")
    assert page.status_code == 200
    assert 'data-testid="runs-retention"' in page.text
    assert "History is kept without a time limit." in page.text  # on-prem: no retention


async def test_run_list_shows_runs_with_job_names_and_filters_them(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    good = await create_job(client, owner, [python_task("ok")])
    bad = await create_job(client, owner, [shell_task("boom", "exit 1")])
    ok_run = await trigger(client, owner, good["id"])
    bad_run = await trigger(client, owner, bad["id"])
    await wait_for_run(client, owner, ok_run["id"])
    await wait_for_run(client, owner, bad_run["id"])

    page = await owner_browser.get("/runs")
    assert page.status_code == 200
    assert set(listed_run_ids(page.text)) == {ok_run["id"], bad_run["id"]}
    assert good["name"] in page.text and bad["name"] in page.text
    assert 'data-testid="runs-filters"' in page.text
    assert f'data-run-id="{bad_run["id"]}" data-status="failed"' in page.text

    async def listed(query: str) -> set[str]:
        response = await owner_browser.get("/runs?" + query)
        assert response.status_code == 200, response.text
        return set(listed_run_ids(response.text))

    assert await listed("status=failed") == {bad_run["id"]}
    assert await listed("status=failed&status=succeeded") == {ok_run["id"], bad_run["id"]}
    assert await listed("status=running") == set()
    assert await listed(f"job={good['id']}") == {ok_run["id"]}
    assert await listed(f"job={good['id']}&status=failed") == set()
    # The form's empty fields mean "any".
    assert await listed("job=&created_after=&created_before=") == {ok_run["id"], bad_run["id"]}

    created = datetime.fromisoformat(bad_run["created_at"])
    minute_after = (created + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert await listed(f"created_after={minute_after}") == set()
    assert await listed(f"created_before={minute_after}") == {ok_run["id"], bad_run["id"]}
    just_after_bad = (created + timedelta(microseconds=1)).isoformat()
    query = urlencode({"created_before": just_after_bad, "status": "failed"})
    assert await listed(query) == {bad_run["id"]}
    between = {"created_after": ok_run["created_at"], "created_before": bad_run["created_at"]}
    assert await listed(urlencode(between)) == {ok_run["id"]}


async def test_invalid_filters_answer_422_with_the_reason_and_no_runs(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [python_task("ok")])
    run = await trigger(client, owner, job["id"])
    for query, field in (
        ("status=nope", "status"),
        ("job=not-a-uuid", "job"),
        ("created_after=yesterday", "created after"),
        ("created_before=2024-13-45T99:00", "created before"),
    ):
        response = await owner_browser.get("/runs?" + query)
        assert response.status_code == 422, query
        assert 'data-testid="runs-filter-error"' in response.text
        assert field in response.text
        assert run["id"] not in listed_run_ids(response.text)
    backwards = await owner_browser.get(
        "/runs?created_after=2030-01-02T00:00&created_before=2030-01-01T00:00"
    )
    assert backwards.status_code == 422
    assert "created_after must be earlier" in backwards.text
    cursor = await owner_browser.get("/runs?cursor=garbage")
    assert cursor.status_code == 422
    assert cursor.headers["content-type"].startswith("text/html")
    too_long = await owner_browser.get("/runs?job=" + "x" * 500)
    assert too_long.status_code == 422


async def test_run_list_pages_with_the_cursor_and_keeps_the_filter(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [python_task("later")])
    other = await create_job(client, owner, [python_task("other")])
    await trigger(client, owner, other["id"], delay_seconds=3600)
    body = {"runs": [{"delay_seconds": 3600} for _ in range(53)]}
    response = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch", json=body, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    expected = {r["id"] for r in response.json()["runs"]}

    first = await owner_browser.get(f"/runs?job={job['id']}&status=queued")
    assert first.status_code == 200
    first_ids = listed_run_ids(first.text)
    assert len(first_ids) == 50
    link = re.search(r'<a href="([^"]+)" class="button ghost">Older', first.text)
    assert link, "no link to the next page"
    next_url = link.group(1).replace("&amp;", "&")
    assert f"job={job['id']}" in next_url and "status=queued" in next_url
    second = await owner_browser.get(next_url)
    second_ids = listed_run_ids(second.text)
    assert len(second_ids) == 3
    assert set(first_ids) | set(second_ids) == expected
    assert "Older" not in second.text


# --------------------------------------------------------------------------- the run page


async def test_run_page_shows_the_dag_tasks_attempts_and_escaped_logs(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(
        client,
        owner,
        [
            shell_task("greet", "echo hello; echo '<b>bold</b> & co'; echo oops >&2"),
            python_task("after", depends_on=["greet"]),
        ],
        params={"region": "<eu>"},
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded"

    page = await owner_browser.get(f"/runs/{run['id']}?task=greet")
    assert page.status_code == 200
    html = page.text
    assert run_status(html) == "succeeded"
    assert f'href="/jobs/{job["id"]}" data-testid="run-job-link">{job["name"]}<' in html
    assert 'data-testid="run-dag"' in html
    assert node_status(html, "greet") == "succeeded" and node_status(html, "after") == "succeeded"
    assert task_row_status(html, "greet") == "succeeded"
    assert 'data-testid="attempt-row-greet-1" data-status="succeeded"' in html
    assert "worker-test" in html  # the attempt's worker
    assert 'data-testid="run-duration"' in html
    assert "&lt;eu&gt;" in html and "<eu>" not in html  # params, escaped
    # The log pane of greet: every line, escaped, in order, and the task's end.
    assert 'data-testid="log-pane" data-task="greet"' in html
    assert 'data-testid="log-status" data-status="succeeded" data-live="off"' in html
    texts = log_texts(html)  # stdout in order; stderr is another pipe, its line anywhere
    assert [t for t in texts if t != "oops"] == ["hello", "&lt;b&gt;bold&lt;/b&gt; &amp; co"]
    assert texts.count("oops") == 1
    assert "<b>bold</b>" not in html
    assert 'class="log-line log-stderr"' in html
    assert 'data-testid="log-end" data-status="succeeded"' in html
    # A finished run is not live: no stream to connect to, no cancel button.
    assert "sse-connect" not in html
    assert 'data-testid="run-cancel"' not in html
    assert 'data-testid="run-rerun"' in html and 'data-testid="run-rerun-failed"' not in html

    # Another task's pane, as htmx swaps it in.
    pane = await owner_browser.htmx("GET", f"/runs/{run['id']}/tasks/after/logs")
    assert pane.status_code == 200
    assert 'id="log-pane"' in pane.text
    assert 'data-task="after"' in pane.text and "<html" not in pane.text
    missing = await owner_browser.get(f"/runs/{run['id']}?task=nope")
    assert missing.status_code == 404


async def test_for_each_children_follow_their_group_and_have_their_own_logs(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(
        client,
        owner,
        [
            python_task("list", "worker.builtins:echo", kwargs={"value": ["a", "b"]}),
            shell_task(
                "each", 'echo "item $BATON_ITEM"', depends_on=["list"], for_each="tasks.list.output"
            ),
        ],
    )
    run = await trigger(client, owner, job["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    page = await owner_browser.get(f"/runs/{run['id']}")
    html = page.text
    rows = re.findall(r'data-testid="task-row-([^"]+)"', html)
    assert rows == ["list", "each", "each[0]", "each[1]"]
    assert "2 succeeded" in html  # the group's items by status
    child = await owner_browser.get(f"/runs/{run['id']}?task=each%5B1%5D")
    assert child.status_code == 200
    assert 'data-testid="log-pane" data-task="each[1]"' in child.text
    assert log_texts(child.text) == ["item b"]
    pane = await owner_browser.htmx("GET", f"/runs/{run['id']}/tasks/each%5B0%5D/logs")
    assert log_texts(pane.text) == ["item a"]


async def test_failure_reasons_show_and_rerun_from_failure_reruns_only_the_failed_part(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await failing_dag(client, owner)
    run = await trigger(client, owner, job["id"])
    failed = await wait_for_run(client, owner, run["id"])
    assert failed["status"] == "failed"

    page = await owner_browser.get(f"/runs/{run['id']}")
    html = page.text
    assert run_status(html) == "failed"
    assert node_status(html, "load") == "failed"
    assert node_status(html, "report") == "upstream_failed"
    assert task_row_status(html, "report") == "upstream_failed"
    why = re.search(r'data-testid="task-why-report">(.*?)</td>', html, re.S)
    assert why and task_of(failed, "report")["explanation"] in why.group(1).replace("&#39;", "'")
    assert 'data-testid="attempt-row-load-1" data-status="failed"' in html
    assert re.search(r"<td>3</td>", html), "the exit code of load"
    # The page opens with the failed task's log.
    assert 'data-testid="log-pane" data-task="load"' in html
    # stdout and stderr are two pipes: their lines interleave in either order.
    assert sorted(log_texts(html)) == ["disk &lt;full&gt;", "loading"]
    assert 'data-testid="run-rerun-failed"' in html and 'data-testid="run-cancel"' not in html

    response = await owner_browser.post(f"/runs/{run['id']}/rerun", {"from_failed": "true"})
    assert response.status_code == 303
    new_id = response.headers["location"].removeprefix("/runs/")
    assert new_id != run["id"]
    rerun = await wait_for_run(client, owner, new_id)
    assert rerun["rerun_of"] == run["id"] and rerun["trigger"] == "rerun"
    prepare = task_of(rerun, "prepare")
    assert prepare["status"] == "succeeded" and prepare["reason"] == "reused"
    assert prepare["attempts"] == []  # not run again
    assert task_of(rerun, "load")["attempts"] and task_of(rerun, "load")["status"] == "failed"
    new_page = await owner_browser.get(response.headers["location"])
    assert new_page.status_code == 200
    assert f'href="/runs/{run["id"]}" data-testid="run-rerun-of"' in new_page.text

    # A whole re-run runs every task again.
    whole = await owner_browser.post(f"/runs/{run['id']}/rerun")
    assert whole.status_code == 303
    again = await wait_for_run(client, owner, whole.headers["location"].removeprefix("/runs/"))
    assert task_of(again, "prepare")["attempts"], "prepare ran again"
    assert len(await runs_of_job(client, owner, job["id"])) == 3


async def test_cancel_stops_a_long_running_run(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    _, run = await long_run(client, owner)
    page = await owner_browser.get(f"/runs/{run['id']}")
    assert run_status(page.text) == "running"
    assert 'data-testid="run-cancel"' in page.text
    assert 'data-testid="run-rerun"' not in page.text
    assert f'sse-connect="/runs/{run["id"]}/live"' in page.text
    assert 'data-testid="log-pane" data-task="wait"' in page.text
    assert 'data-testid="log-status" data-status="running" data-live="on"' in page.text

    response = await owner_browser.post(f"/runs/{run['id']}/cancel")
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{run['id']}"
    cancelled = await wait_for_run(client, owner, run["id"], timeout=5)
    assert cancelled["status"] == "cancelled"
    after = await owner_browser.get(f"/runs/{run['id']}")
    assert run_status(after.text) == "cancelled"
    assert 'data-testid="run-cancel"' not in after.text
    assert "cancelled by " + owner.email in after.text
    again = await owner_browser.post(f"/runs/{run['id']}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.text


# ------------------------------------------------------------------------------- streams


def hold_until(marker: Path) -> str:
    """A shell loop that waits (polling every 0.05 s, 60 s at most) until ``marker``
    exists: a task cannot go past it before the test has seen what it waits for."""
    return f"for i in $(seq 1200); do [ -e {marker} ] && break; sleep 0.05; done"


def touch_once(marker: Path, seen: Callable[[Frames], bool]) -> Callable[[Frames], bool]:
    """An ``until`` for :func:`read_stream` that never stops the stream but creates
    ``marker`` once ``seen(frames)`` holds."""

    def until(frames: Frames) -> bool:
        if not marker.exists() and seen(frames):
            marker.touch()
        return False

    return until


async def test_live_run_stream_sends_a_fragment_per_change_and_ends_with_the_run(
    client: AsyncClient, owner: Account, owner_browser: Browser, server: str, tmp_path: Path
) -> None:
    marker = tmp_path / "go"  # the nap task ends only once the stream showed it running

    def nap_running(frames: Frames) -> bool:
        return any(
            f.get("event") == "run" and node_status(f["data"], "nap") == "running" for f in frames
        )

    job = await create_job(
        client,
        owner,
        [shell_task("nap", hold_until(marker)), python_task("then", depends_on=["nap"])],
    )
    run = await trigger(client, owner, job["id"])
    try:
        frames, closed = await read_stream(
            server, owner_browser, f"/runs/{run['id']}/live", until=touch_once(marker, nap_running)
        )
    finally:
        marker.touch()
    assert closed, "the stream ended on its own"
    assert frames[-1] == {"event": "end", "data": "end"}
    fragments = [f["data"] for f in frames if f.get("event") == "run"]
    statuses = [run_status(html) for html in fragments]
    assert statuses[0] in ("queued", "running")
    assert statuses[-1] == "succeeded"
    assert len(fragments) >= 2, "at least one change after the first rendering"
    last = fragments[-1]
    assert node_status(last, "nap") == "succeeded" and task_row_status(last, "then") == "succeeded"
    assert 'data-testid="run-rerun"' in last and 'data-testid="run-cancel"' not in last
    assert "<html" not in last  # a fragment, not a page
    assert any(node_status(html, "nap") == "running" for html in fragments)

    # A finished run: its state once, then the end.
    frames, closed = await read_stream(server, owner_browser, f"/runs/{run['id']}/live", seconds=5)
    assert closed and [f["event"] for f in frames] == ["run", "end"]


async def test_live_log_stream_shows_the_lines_of_a_running_shell_task(
    client: AsyncClient, owner: Account, owner_browser: Browser, server: str, tmp_path: Path
) -> None:
    marker = tmp_path / "go"  # the task prints its last lines once the stream showed "one"

    def one_shown(frames: Frames) -> bool:
        return "one" in log_texts("".join(f["data"] for f in frames if f.get("event") == "log"))

    job = await create_job(
        client,
        owner,
        [shell_task("talk", f"echo one; {hold_until(marker)}; echo '<two>'; echo three")],
    )
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"], statuses={"running", "succeeded"})
    path = f"/runs/{run['id']}/tasks/talk/logs/live"
    try:
        frames, closed = await read_stream(
            server, owner_browser, path, until=touch_once(marker, one_shown)
        )
    finally:
        marker.touch()
    assert closed and frames[-1]["event"] == "end"
    html = "".join(f["data"] for f in frames if f.get("event") == "log")
    assert log_texts(html) == ["one", "&lt;two&gt;", "three"]
    assert 'data-testid="log-end" data-status="succeeded"' in html
    # ... and the pane's task line, replaced out of band, says the task is over.
    assert re.search(r'data-status="succeeded" data-live="off" hx-swap-oob="true"', html)
    assert len([f for f in frames if f.get("event") == "log"]) >= 2, "lines came as printed"

    # Resuming after a line the page already shows sends only what follows.
    frames, closed = await read_stream(server, owner_browser, path + "?attempt=1&after=1")
    html = "".join(f["data"] for f in frames if f.get("event") == "log")
    assert closed and log_texts(html) == ["&lt;two&gt;", "three"]


async def test_live_log_stream_follows_a_retry_into_its_next_attempt(
    client: AsyncClient, owner: Account, owner_browser: Browser, server: str
) -> None:
    marker = f"/tmp/baton-web-retry-{uuid.uuid4().hex}"
    command = (
        f"if [ -f {marker} ]; then echo second; rm -f {marker}; "
        f"else touch {marker}; echo first; sleep 0.5; exit 1; fi"
    )
    job = await create_job(
        client,
        owner,
        [shell_task("flaky", command, retry={"max_attempts": 2, "initial_delay": 1})],
    )
    run = await trigger(client, owner, job["id"])
    path = f"/runs/{run['id']}/tasks/flaky/logs/live"
    frames, closed = await read_stream(server, owner_browser, path)
    assert closed and frames[-1]["event"] == "end"
    html = "".join(f["data"] for f in frames if f.get("event") == "log")
    assert log_texts(html) == ["first", "second"]
    assert 'data-testid="log-attempt" data-attempt="2"' in html
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded" and task_of(done, "flaky")["attempt"] == 2
    page = await owner_browser.get(f"/runs/{run['id']}")
    assert 'data-testid="attempt-row-flaky-1" data-status="failed"' in page.text
    assert 'data-testid="attempt-row-flaky-2" data-status="succeeded"' in page.text
    assert 'data-testid="log-attempt" data-attempt="2"' in page.text


# ------------------------------------------------------------------------ roles and tenants


async def test_a_viewer_sees_no_actions_and_is_refused_them(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    viewer = await create_browser(await create_member(client, owner, "viewer"))
    failed_job = await failing_dag(client, owner)
    failed = await trigger(client, owner, failed_job["id"])
    await wait_for_run(client, owner, failed["id"])
    _, running = await long_run(client, owner)

    for run_id in (failed["id"], running["id"]):
        page = await viewer.get(f"/runs/{run_id}")
        assert page.status_code == 200
        for button in ("run-cancel", "run-rerun", "run-rerun-failed"):
            assert f'data-testid="{button}"' not in page.text
    assert (await viewer.get("/runs")).status_code == 200

    cancel = await viewer.post(f"/runs/{running['id']}/cancel")
    assert cancel.status_code == 403
    rerun = await viewer.post(f"/runs/{failed['id']}/rerun", {"from_failed": "true"})
    assert rerun.status_code == 403
    assert (await api_run(client, owner, running["id"]))["status"] == "running"
    assert len(await runs_of_job(client, owner, failed_job["id"])) == 1

    # An operator may: the button is there and works.
    operator = await create_browser(await create_member(client, owner, "operator"))
    page = await operator.get(f"/runs/{running['id']}")
    assert 'data-testid="run-cancel"' in page.text
    assert (await operator.post(f"/runs/{running['id']}/cancel")).status_code == 303
    assert (await api_run(client, owner, running["id"]))["status"] == "cancelled"


async def test_another_tenants_run_is_404_everywhere(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    spy = await create_browser(stranger)
    _, run = await long_run(client, owner)
    base = f"/runs/{run['id']}"
    for path in (
        base,
        base + "?task=wait",
        base + "/tasks/wait/logs",
        base + "/live",
        base + "/tasks/wait/logs/live",
    ):
        response = await spy.get(path)
        assert response.status_code == 404, path
        assert "waiting" not in response.text
    for path, data in ((base + "/cancel", {}), (base + "/rerun", {"from_failed": "true"})):
        assert (await spy.post(path, data)).status_code == 404, path
    listing = await spy.get("/runs")
    assert run["id"] not in listing.text
    assert (await api_run(client, owner, run["id"]))["status"] == "running"
    await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_unknown_runs_and_tasks_are_404(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    unknown = f"/runs/{uuid.uuid4()}"
    for path in (
        unknown,
        unknown + "/tasks/a/logs",
        unknown + "/live",
        unknown + "/tasks/a/logs/live",
    ):
        response = await owner_browser.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
    for path in (unknown + "/cancel", unknown + "/rerun"):
        assert (await owner_browser.post(path)).status_code == 404, path
    job = await create_job(client, owner, [python_task("only")])
    run = await trigger(client, owner, job["id"])
    for path in (f"/runs/{run['id']}/tasks/nope/logs", f"/runs/{run['id']}/tasks/nope/logs/live"):
        assert (await owner_browser.get(path)).status_code == 404, path
    bad_attempt = await owner_browser.get(f"/runs/{run['id']}/tasks/only/logs/live?attempt=0")
    assert bad_attempt.status_code == 422
    assert (await owner_browser.get("/runs/not-a-uuid")).status_code in (404, 422)


async def test_anonymous_browsers_go_to_login(
    client: AsyncClient, owner: Account, anonymous: Browser
) -> None:
    job = await create_job(client, owner, [python_task("only")])
    run = await trigger(client, owner, job["id"])
    base = f"/runs/{run['id']}"
    for path in (
        "/runs?status=failed",
        base,
        base + "/tasks/only/logs",
        base + "/live",
        base + "/tasks/only/logs/live",
    ):
        response = await anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    for path in (base + "/cancel", base + "/rerun"):
        response = await anonymous.post(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login")


async def test_actions_without_the_csrf_token_are_refused_and_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job, run = await long_run(client, owner)
    await owner_browser.get(f"/runs/{run['id']}")
    for path in (f"/runs/{run['id']}/cancel", f"/runs/{run['id']}/rerun"):
        bare = await owner_browser.http.post(path)
        assert bare.status_code == 403, path
        forged = await owner_browser.http.post(path, data={"csrf_token": "x" * 43})
        assert forged.status_code == 403, path
        assert "csrf_failed" in forged.text
    assert (await api_run(client, owner, run["id"]))["status"] == "running"
    assert len(await runs_of_job(client, owner, job["id"])) == 1
    # The same action through htmx carries the token in its header.
    response = await owner_browser.htmx("POST", f"/runs/{run['id']}/cancel")
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == f"/runs/{run['id']}"
    assert (await api_run(client, owner, run["id"]))["status"] == "cancelled"

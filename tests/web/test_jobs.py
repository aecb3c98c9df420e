"""Jobs pages: list, create/edit in YAML with problems at their lines, job page, trigger,
pause/resume, delete; roles, tenants, sessions and CSRF."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from markupsafe import escape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit, scope_to_tenant
from backend.schedules.firing import fire_due
from tests.fixtures.factories import Account, create_member, create_tenant
from tests.fixtures.schedules import ScheduledJob
from tests.runs.factories import create_job, python_task, shell_task, trigger
from tests.web.helpers import Browser, BrowserFactory

DAILY_AT_3 = {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}

VALID_YAML = """\
name: {name}
description: made in the dashboard
params: {{date: "2026-01-01", limit: 1}}
tasks:
  - name: extract
    type: shell
    command: echo extract
  - name: load
    type: python
    function: worker.builtins:noop
    depends_on: [extract]
"""

WRONG_FIELD = """\
name: wrong-field
tasks:
  - name: a
    type: shell
    command: echo a
    timeout: 30
"""  # `timeout` is not a field (timeout_seconds is): line 6

BAD_DEPENDENCY = """\
name: bad-dependency
tasks:
  - name: a
    type: shell
    command: echo a
  - name: b
    type: shell
    command: echo b
    depends_on:
      - a
      - nowhere
"""  # line 11

CYCLE = """\
name: cycle
tasks:
  - name: a
    type: shell
    command: echo a
    depends_on: [c]
  - name: b
    type: shell
    command: echo b
    depends_on: [a]
  - name: c
    type: shell
    command: echo c
    depends_on: [b]
"""  # reported at the first edge of the cycle: tasks[0].depends_on[0], line 6

SYNTAX_ERROR = """\
name: syntax
tasks:
  - name: a
    type: shell
    command: "echo a
  - name: b
"""  # an unclosed quote: the scanner stops at the end of the document, line 7


def spec_of(name: str) -> str:
    return VALID_YAML.format(name=name)


def unique_name(prefix: str = "web") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def row_of(html: str, job_id: str) -> str:
    """The jobs-table row of one job."""
    start = html.index(f'data-job-id="{job_id}"')
    return html[start : html.index("</tr>", start)]


def kept(html: str, typed: str) -> bool:
    """Whether the text the user typed is back in the textarea, as typed."""
    return str(escape(typed)) in html


async def api_job(client: AsyncClient, account: Account, job_id: str) -> Response:
    return await client.get(f"/api/v1/jobs/{job_id}", headers=account.headers)


async def api_runs(client: AsyncClient, account: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/runs?job_id={job_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def job_names(client: AsyncClient, account: Account) -> set[str]:
    response = await client.get("/api/v1/jobs?limit=200", headers=account.headers)
    assert response.status_code == 200, response.text
    return {job["name"] for job in response.json()["items"]}


@pytest.fixture
async def viewer(client: AsyncClient, owner: Account) -> Account:
    return await create_member(client, owner, "viewer")


@pytest.fixture
async def operator(client: AsyncClient, owner: Account) -> Account:
    return await create_member(client, owner, "operator")


# ---------------------------------------------------------------------------------- list


async def test_list_shows_last_run_status_and_next_fire(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    manual = await create_job(client, owner, [shell_task("a", "echo a")])
    scheduled = await create_job(client, owner, [shell_task("a", "echo a")], schedule=DAILY_AT_3)
    await trigger(client, owner, manual["id"])
    newest = await trigger(client, owner, manual["id"])

    response = await owner_browser.get("/jobs")
    assert response.status_code == 200
    assert 'data-testid="jobs-table"' in response.text
    manual_row = row_of(response.text, manual["id"])
    assert manual["name"] in manual_row
    assert f'href="/runs/{newest["id"]}"' in manual_row  # the newest run, not the first
    assert 'data-status="queued"' in manual_row
    assert "manual" in manual_row
    scheduled_row = row_of(response.text, scheduled["id"])
    assert "never run" in scheduled_row
    assert 'data-testid="job-paused"' not in scheduled_row
    # The next 03:00 in Berlin: 01:00 or 02:00 UTC, within the next day.
    fire = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", scheduled_row)
    assert fire, scheduled_row
    instant = datetime.strptime(fire.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert instant.hour in (1, 2) and instant.minute == 0
    assert timedelta(0) < instant - datetime.now(UTC) <= timedelta(days=1)

    await client.post(f"/api/v1/jobs/{scheduled['id']}/pause", headers=owner.headers)
    paused = await owner_browser.get("/jobs")
    assert 'data-testid="job-paused"' in row_of(paused.text, scheduled["id"])


async def test_list_pages_with_the_service_cursor(
    client: AsyncClient, create_browser: BrowserFactory
) -> None:
    account = await create_tenant(client)
    created = [await create_job(client, account, [shell_task("a", "true")]) for _ in range(51)]
    browser = await create_browser(account)
    first = await browser.get("/jobs")
    assert first.text.count('data-testid="job-row"') == 50
    assert created[0]["id"] not in first.text  # the oldest is on the next page
    older = re.search(r'href="(/jobs\?cursor=[^"]+)"', first.text)
    assert older
    second = await browser.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count('data-testid="job-row"') == 1
    assert created[0]["id"] in second.text


async def test_list_offers_new_job_to_editors_only(
    owner_browser: Browser, create_browser: BrowserFactory, viewer: Account, operator: Account
) -> None:
    assert 'data-testid="new-job-button"' in (await owner_browser.get("/jobs")).text
    for account in (viewer, operator):
        browser = await create_browser(account)
        response = await browser.get("/jobs")
        assert response.status_code == 200
        assert 'data-testid="new-job-button"' not in response.text


# ------------------------------------------------------------------------------- create


async def test_create_job_from_yaml(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    form = await owner_browser.get("/jobs/new")
    assert form.status_code == 200
    assert 'data-testid="spec-textarea"' in form.text
    name = unique_name()
    response = await owner_browser.post("/jobs/new", {"spec": spec_of(name)})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    job_id = location.removeprefix("/jobs/")
    job = (await api_job(client, owner, job_id)).json()
    assert job["name"] == name
    assert job["spec"]["tasks"][1]["depends_on"] == ["extract"]
    page = await owner_browser.get(location)
    assert page.status_code == 200
    assert 'data-task="extract"' in page.text and 'data-task="load"' in page.text


@pytest.mark.parametrize(
    ("typed", "line", "path"),
    [
        (WRONG_FIELD, 6, "tasks[0].timeout"),
        (BAD_DEPENDENCY, 11, "tasks[1].depends_on[1]"),
        (CYCLE, 6, "tasks[0].depends_on[0]"),
        (SYNTAX_ERROR, 7, ""),
        (BAD_DEPENDENCY.replace("\n", "\r\n"), 11, "tasks[1].depends_on[1]"),
    ],
    ids=["wrong-field", "bad-depends-on", "cycle", "yaml-syntax", "crlf-as-browsers-send"],
)
async def test_invalid_specs_show_their_problems_at_the_right_line(
    client: AsyncClient, owner: Account, owner_browser: Browser, typed: str, line: int, path: str
) -> None:
    before = await job_names(client, owner)
    response = await owner_browser.post("/jobs/new", {"spec": typed})
    assert response.status_code == 422
    assert f'data-line="{line}"' in response.text
    assert f"line {line}</a>" in response.text
    if path:
        assert f"<code>{path}</code>" in response.text
    assert f'id="spec-line-{line}"' in response.text  # the listing marks that line
    assert kept(response.text, typed)
    assert await job_names(client, owner) == before


async def test_a_name_in_use_is_a_409_at_the_name_line(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    existing = await create_job(client, owner, [shell_task("a", "true")])
    typed = "# a comment first\n" + spec_of(existing["name"])
    response = await owner_browser.post("/jobs/new", {"spec": typed})
    assert response.status_code == 409
    assert 'data-line="2"' in response.text
    assert "already" in response.text
    assert kept(response.text, typed)


async def test_an_empty_or_non_mapping_spec_is_a_422(owner_browser: Browser) -> None:
    for typed in ("", "- just\n- a list\n"):
        response = await owner_browser.post("/jobs/new", {"spec": typed})
        assert response.status_code == 422
        assert "must be a YAML mapping" in response.text


# --------------------------------------------------------------------------------- edit


async def test_edit_saves_a_new_version_and_keeps_identical_text_as_is(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "echo a")], schedule=DAILY_AT_3)
    form = await owner_browser.get(f"/jobs/{job['id']}/edit")
    assert form.status_code == 200
    current = re.search(r'data-testid="spec-textarea">\n(.*?)</textarea>', form.text, re.S)
    assert current
    typed = current.group(1).replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
    assert f"name: {job['name']}" in typed and "cron: 0 3 * * *" in typed

    unchanged = await owner_browser.post(f"/jobs/{job['id']}/edit", {"spec": typed})
    assert unchanged.status_code == 303
    assert (await api_job(client, owner, job["id"])).json()["current_version"] == 1

    changed = typed.replace("echo a", "echo changed")
    response = await owner_browser.post(f"/jobs/{job['id']}/edit", {"spec": changed})
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job['id']}"
    after = (await api_job(client, owner, job["id"])).json()
    assert after["current_version"] == 2
    assert after["spec"]["tasks"][0]["command"] == "echo changed"

    version_page = await owner_browser.get(f"/jobs/{job['id']}/versions/1")
    assert version_page.status_code == 200
    assert "echo a" in version_page.text and "echo changed" not in version_page.text
    assert (await owner_browser.get(f"/jobs/{job['id']}/versions/3")).status_code == 404
    assert (await owner_browser.get(f"/jobs/{job['id']}/versions/x")).status_code == 404


async def test_edit_with_problems_is_a_422_and_changes_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "echo a")])
    typed = WRONG_FIELD.replace("wrong-field", job["name"])
    response = await owner_browser.post(f"/jobs/{job['id']}/edit", {"spec": typed})
    assert response.status_code == 422
    assert 'data-line="6"' in response.text
    assert kept(response.text, typed)
    assert (await api_job(client, owner, job["id"])).json()["current_version"] == 1


async def test_renaming_to_a_name_in_use_is_a_409(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    taken = await create_job(client, owner, [shell_task("a", "true")])
    job = await create_job(client, owner, [shell_task("a", "true")])
    response = await owner_browser.post(f"/jobs/{job['id']}/edit", {"spec": spec_of(taken["name"])})
    assert response.status_code == 409
    assert 'data-line="1"' in response.text
    assert (await api_job(client, owner, job["id"])).json()["name"] == job["name"]


# ------------------------------------------------------------------------ job page, delete


async def test_job_page_shows_dag_schedule_preview_ticks_versions_and_runs(
    client: AsyncClient,
    owner: Account,
    owner_browser: Browser,
    app: FastAPI,
    owner_engine: AsyncEngine,
    scheduled_job: ScheduledJob,
) -> None:
    job = await scheduled_job(
        owner,
        cron="* * * * *",
        timezone="Asia/Kolkata",
        tasks=[python_task("first"), python_task("second", depends_on=["first"])],
    )
    # The scheduler was "down" for three minutes: one late instant fires (fire_once), the
    # older ones are missed, each with its reason in the ledger.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - interval '200 seconds', "
                "next_due_at = now() - interval '200 seconds' WHERE job_id = :job"
            ),
            {"job": job["id"]},
        )
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        await fire_due(session, app.state.redis, owner.tenant_id, fence=1)
        await commit(session)
    runs = await api_runs(client, owner, job["id"])
    assert runs

    response = await owner_browser.get(f"/jobs/{job['id']}")
    assert response.status_code == 200
    html = response.text
    assert 'data-testid="job-dag"' in html and "<svg" in html
    assert 'data-task="first"' in html and 'data-task="second"' in html
    assert 'data-testid="schedule-cron">* * * * *<' in html
    assert html.count('data-testid="fire-time"') == 10
    assert "IST" in html  # local times in the schedule's zone
    assert 'data-outcome="fired"' in html and 'data-outcome="missed"' in html
    assert "due while no scheduler was running" in html
    assert 'data-testid="version-row" data-version="1"' in html
    assert f'data-run-id="{runs[0]["id"]}"' in html


async def test_job_page_of_a_manual_job(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")])
    html = (await owner_browser.get(f"/jobs/{job['id']}")).text
    assert 'data-testid="schedule-manual"' in html
    assert 'data-testid="pause-button"' not in html
    assert 'data-testid="job-runs-empty"' in html
    for button in ("edit-job-button", "delete-job-button", "trigger-button"):
        assert f'data-testid="{button}"' in html


async def test_delete_removes_the_job(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")])
    response = await owner_browser.post(f"/jobs/{job['id']}/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    assert (await api_job(client, owner, job["id"])).status_code == 404
    assert (await owner_browser.get(f"/jobs/{job['id']}")).status_code == 404
    again = await owner_browser.post(f"/jobs/{job['id']}/delete")
    assert again.status_code == 404


# -------------------------------------------------------------------- trigger, pause/resume


async def test_trigger_with_params_opens_the_run(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(
        client, owner, [shell_task("a", "true")], params={"date": "2026-01-01", "limit": 1}
    )
    response = await owner_browser.post(
        f"/jobs/{job['id']}/trigger", {"params": 'limit: 5\nregion: "eu"\n'}
    )
    assert response.status_code == 303
    run_id = response.headers["location"].removeprefix("/runs/")
    run = (await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)).json()
    assert run["job_id"] == job["id"]
    assert run["params"] == {"date": "2026-01-01", "limit": 5, "region": "eu"}
    assert run["trigger"] == "manual"

    as_json = await owner_browser.post(f"/jobs/{job['id']}/trigger", {"params": '{"limit": 9}'})
    assert as_json.status_code == 303
    empty = await owner_browser.post(f"/jobs/{job['id']}/trigger", {"params": ""})
    assert empty.status_code == 303
    params = sorted(r["params"]["limit"] for r in await api_runs(client, owner, job["id"]))
    assert params == [1, 5, 9]


async def test_trigger_with_bad_params_is_a_422_and_starts_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")])
    for typed, expected in (
        ("- a\n- list\n", "mapping of names to values"),
        ("ok: 1\nbroken: [\n", "line 3"),
    ):
        response = await owner_browser.post(f"/jobs/{job['id']}/trigger", {"params": typed})
        assert response.status_code == 422
        assert 'data-testid="trigger-error"' in response.text
        assert expected in response.text
        assert kept(response.text, typed)
    assert await api_runs(client, owner, job["id"]) == []


async def test_trigger_refused_by_the_concurrency_policy_is_a_409(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], concurrency_policy="forbid")
    await trigger(client, owner, job["id"])
    response = await owner_browser.post(f"/jobs/{job['id']}/trigger", {"params": ""})
    assert response.status_code == 409
    assert "forbids concurrent runs" in response.text
    assert len(await api_runs(client, owner, job["id"])) == 1


async def test_pause_and_resume_change_the_schedule(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], schedule=DAILY_AT_3)
    page = await owner_browser.get(f"/jobs/{job['id']}")
    assert 'data-testid="pause-button"' in page.text
    paused = await owner_browser.post(f"/jobs/{job['id']}/pause")
    assert paused.status_code == 303
    assert paused.headers["location"] == f"/jobs/{job['id']}"
    page = await owner_browser.get(f"/jobs/{job['id']}")
    assert 'data-testid="schedule-state">paused<' in page.text
    assert 'data-testid="resume-button"' in page.text
    assert 'data-testid="job-paused"' in row_of((await owner_browser.get("/jobs")).text, job["id"])
    # The API sees the same state: resuming there reports it was paused until now.
    resumed = await owner_browser.post(f"/jobs/{job['id']}/resume")
    assert resumed.status_code == 303
    page = await owner_browser.get(f"/jobs/{job['id']}")
    assert 'data-testid="schedule-state">active<' in page.text
    api = await client.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert api.json()["paused"] is True


async def test_pausing_a_job_without_schedule_is_a_404(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")])
    response = await owner_browser.post(f"/jobs/{job['id']}/pause")
    assert response.status_code == 404
    assert "no schedule" in response.text


# -------------------------------------------------------------------------------- roles


async def test_viewer_sees_no_buttons_and_is_refused(
    client: AsyncClient, owner: Account, viewer: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], schedule=DAILY_AT_3)
    browser = await create_browser(viewer)
    page = await browser.get(f"/jobs/{job['id']}")
    assert page.status_code == 200
    for button in (
        "edit-job-button",
        "delete-job-button",
        "trigger-button",
        "pause-button",
        "resume-button",
    ):
        assert f'data-testid="{button}"' not in page.text
    assert (await browser.get("/jobs/new")).status_code == 403
    assert (await browser.get(f"/jobs/{job['id']}/edit")).status_code == 403
    name = unique_name("viewer")
    refused = {
        "/jobs/new": {"spec": spec_of(name)},
        f"/jobs/{job['id']}/edit": {"spec": spec_of(name)},
        f"/jobs/{job['id']}/delete": {},
        f"/jobs/{job['id']}/trigger": {"params": ""},
        f"/jobs/{job['id']}/pause": {},
        f"/jobs/{job['id']}/resume": {},
    }
    for path, form in refused.items():
        response = await browser.post(path, form)
        assert response.status_code == 403, path
    after = (await api_job(client, owner, job["id"])).json()
    assert after["name"] == job["name"] and after["current_version"] == 1
    assert name not in await job_names(client, owner)
    assert await api_runs(client, owner, job["id"]) == []
    assert 'data-testid="schedule-state">active<' in (await browser.get(f"/jobs/{job['id']}")).text


async def test_operator_can_trigger_and_pause_but_not_edit(
    client: AsyncClient, owner: Account, operator: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], schedule=DAILY_AT_3)
    browser = await create_browser(operator)
    page = await browser.get(f"/jobs/{job['id']}")
    assert 'data-testid="trigger-button"' in page.text
    assert 'data-testid="pause-button"' in page.text
    assert 'data-testid="edit-job-button"' not in page.text
    assert 'data-testid="delete-job-button"' not in page.text
    assert (await browser.post(f"/jobs/{job['id']}/trigger", {"params": ""})).status_code == 303
    assert (await browser.post(f"/jobs/{job['id']}/pause")).status_code == 303
    edit = await browser.post(f"/jobs/{job['id']}/edit", {"spec": spec_of(job["name"])})
    assert edit.status_code == 403
    assert (await browser.post(f"/jobs/{job['id']}/delete")).status_code == 403
    assert (await api_job(client, owner, job["id"])).json()["current_version"] == 1
    assert len(await api_runs(client, owner, job["id"])) == 1


# ------------------------------------------------------------- tenants, ids, session, CSRF


async def test_another_tenants_job_is_a_404(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], schedule=DAILY_AT_3)
    browser = await create_browser(stranger)
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/edit", f"/jobs/{job['id']}/versions/1"):
        assert (await browser.get(path)).status_code == 404, path
    for path, form in (
        (f"/jobs/{job['id']}/edit", {"spec": spec_of(unique_name())}),
        (f"/jobs/{job['id']}/delete", {}),
        (f"/jobs/{job['id']}/trigger", {"params": ""}),
        (f"/jobs/{job['id']}/pause", {}),
        (f"/jobs/{job['id']}/resume", {}),
    ):
        assert (await browser.post(path, form)).status_code == 404, path
    assert job["id"] not in (await browser.get("/jobs")).text
    after = (await api_job(client, owner, job["id"])).json()
    assert after["current_version"] == 1
    assert await api_runs(client, owner, job["id"]) == []


async def test_unknown_ids_are_404(owner_browser: Browser) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        page = await owner_browser.get(f"/jobs/{job_id}")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert (await owner_browser.get(f"/jobs/{job_id}/edit")).status_code == 404
        trig = await owner_browser.post(f"/jobs/{job_id}/trigger", {"params": ""})
        assert trig.status_code == 404
        assert (await owner_browser.post(f"/jobs/{job_id}/pause")).status_code == 404


async def test_anonymous_is_sent_to_login(client: AsyncClient, anonymous: Browser) -> None:
    owner = await create_tenant(client)
    job = await create_job(client, owner, [shell_task("a", "true")])
    for path in ("/jobs", "/jobs/new", f"/jobs/{job['id']}", f"/jobs/{job['id']}/edit"):
        response = await anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path
    for path in (f"/jobs/{job['id']}/trigger", f"/jobs/{job['id']}/delete", "/jobs/new"):
        response = await anonymous.post(path, {"params": "", "spec": spec_of(unique_name())})
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login"), path
    assert (await api_job(client, owner, job["id"])).status_code == 200
    assert await api_runs(client, owner, job["id"]) == []


async def test_posts_without_the_csrf_token_are_refused(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")], schedule=DAILY_AT_3)
    name = unique_name("csrf")
    for path, form in (
        ("/jobs/new", {"spec": spec_of(name)}),
        (f"/jobs/{job['id']}/edit", {"spec": spec_of(name)}),
        (f"/jobs/{job['id']}/delete", {}),
        (f"/jobs/{job['id']}/trigger", {"params": ""}),
        (f"/jobs/{job['id']}/pause", {}),
    ):
        response = await owner_browser.http.post(path, data=form)
        assert response.status_code == 403, path
        assert "csrf_failed" in response.text
    after = (await api_job(client, owner, job["id"])).json()
    assert after["current_version"] == 1
    assert name not in await job_names(client, owner)
    assert await api_runs(client, owner, job["id"]) == []
    page = await owner_browser.get(f"/jobs/{job['id']}")
    assert 'data-testid="schedule-state">active<' in page.text


async def test_htmx_delete_navigates_with_hx_redirect(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [shell_task("a", "true")])
    await owner_browser.get(f"/jobs/{job['id']}")
    response = await owner_browser.htmx("POST", f"/jobs/{job['id']}/delete")
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/jobs"
    assert (await api_job(client, owner, job["id"])).status_code == 404

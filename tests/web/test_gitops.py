"""The dashboard marks jobs applied from Git (its edit form warns); the template gallery
and its forms generated from parameter schemas."""

from __future__ import annotations

import uuid
from pathlib import Path

from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, shell_task
from tests.web.helpers import Browser, BrowserFactory


async def test_managed_job_is_marked_and_its_edit_form_warns(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    name = f"git-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "tasks": [shell_task("a", "echo a")]}
    applied = await client.post(
        "/api/v1/jobs:apply",
        json={"managed_by": "git:acme/jobs", "jobs": [spec]},
        headers=owner.headers,
    )
    assert applied.status_code == 200, applied.text
    job_id = applied.json()["changes"][0]["job_id"]

    detail = await owner_browser.get(f"/jobs/{job_id}")
    assert detail.status_code == 200
    assert 'data-testid="managed-by"' in detail.text and "Managed by git:acme/jobs" in detail.text
    form = await owner_browser.get(f"/jobs/{job_id}/edit")
    assert 'data-testid="managed-warning"' in form.text
    assert "the next apply from that source overwrites" in form.text

    by_hand = await create_job(client, owner, [shell_task("a", "echo a")])
    assert (
        'data-testid="managed-by"' not in (await owner_browser.get(f"/jobs/{by_hand['id']}")).text
    )
    edit = await owner_browser.get(f"/jobs/{by_hand['id']}/edit")
    assert 'data-testid="managed-warning"' not in edit.text

    # The jobs list marks the managed job's row, and only it.
    listed = await owner_browser.get("/jobs")
    assert listed.status_code == 200
    rows = {
        row.split('data-job-name="', 1)[1].split('"', 1)[0]: row
        for row in listed.text.split('data-testid="job-row"')[1:]
    }
    assert 'data-testid="job-managed-by"' in rows[name]
    assert "managed by git:acme/jobs" in rows[name]
    assert 'data-testid="job-managed-by"' not in rows[by_hand["name"]]


async def test_template_gallery_and_generated_form(
    client: AsyncClient, owner: Account, owner_browser: Browser, tmp_path: Path
) -> None:
    gallery = await owner_browser.get("/templates")
    assert gallery.status_code == 200
    assert gallery.text.count('data-testid="template-row"') >= 8
    assert 'href="/templates/cleanup-old-files"' in gallery.text

    form = await owner_browser.get("/templates/file-sync")
    assert form.status_code == 200
    assert '<select name="param.tool"' in form.text and 'value="rsync" selected' in form.text
    assert 'name="param.source"' in form.text and "required" in form.text
    docker = await owner_browser.get("/templates/docker-container")
    assert '<textarea name="param.args"' in docker.text

    name = f"gal-{uuid.uuid4().hex[:8]}"
    bad = await owner_browser.post(
        "/templates/cleanup-old-files",
        {"job_name": name, "param.directory": str(tmp_path), "param.days": "soon"},
    )
    assert bad.status_code == 422
    assert "params.days: must be of type integer" in bad.text
    assert 'value="soon"' in bad.text, "what was typed is kept"

    made = await owner_browser.post(
        "/templates/cleanup-old-files",
        {"job_name": name, "param.directory": str(tmp_path), "param.days": "3"},
    )
    assert made.status_code == 303, made.text
    job = await client.get(
        made.headers["location"].replace("/jobs/", "/api/v1/jobs/"), headers=owner.headers
    )
    assert job.json()["spec"]["params"] == {
        "directory": str(tmp_path),
        "days": 3,
        "cron": "15 3 * * *",
    }
    taken = await owner_browser.post(
        "/templates/cleanup-old-files", {"job_name": name, "param.directory": "/x"}
    )
    assert taken.status_code == 409
    assert (await owner_browser.get("/templates/no-such")).status_code == 404


async def test_viewer_sees_the_gallery_but_cannot_create(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    viewer = await create_member(client, owner, "viewer")
    browser = await create_browser(viewer)
    form = await browser.get("/templates/cleanup-old-files")
    assert form.status_code == 200 and "template-create-button" not in form.text
    refused = await browser.post(
        "/templates/cleanup-old-files", {"job_name": "nope", "param.directory": "/x"}
    )
    assert refused.status_code == 403

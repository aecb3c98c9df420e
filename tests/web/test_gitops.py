"""The dashboard marks jobs applied from Git, and its edit form warns before editing one."""

from __future__ import annotations

import uuid

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.runs.factories import create_job, shell_task
from tests.web.conftest import Browser


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

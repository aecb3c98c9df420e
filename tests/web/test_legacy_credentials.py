"""Job versions saved before literal credentials were refused may still hold one: every
API answer and dashboard page shows it as ***, viewers' included, while the stored spec
(what tasks run with) is untouched."""

from __future__ import annotations

import json

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.secrets.references import mask_literal_credentials
from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, shell_task
from tests.web.helpers import BrowserFactory

LEGACY = "hunter2-legacy-literal"


async def test_a_legacy_literal_is_masked_for_every_reader(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine, create_browser: BrowserFactory
) -> None:
    env = {"DB_PASSWORD": "${{ secrets.DB_PASSWORD }}", "MODE": "plain"}
    job = await create_job(client, owner, [shell_task("t", "echo", env=env)])
    # What an older Baton let through, written behind the validation's back.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE job_versions SET spec = jsonb_set(spec, '{tasks,0,env,DB_PASSWORD}', "
                ":literal) WHERE tenant_id = :t AND job_id = :j"
            ),
            {"literal": json.dumps(LEGACY), "t": owner.tenant_id, "j": job["id"]},
        )
    viewer = await create_member(client, owner, "viewer")
    for account in (viewer, owner):
        for url in (
            f"/api/v1/jobs/{job['id']}",
            f"/api/v1/jobs/{job['id']}/versions",
            "/api/v1/jobs",
        ):
            response = await client.get(url, headers=account.headers)
            assert response.status_code == 200, response.text
            assert LEGACY not in response.text
        detail = (await client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers)).json()
        assert detail["spec"]["tasks"][0]["env"] == {"DB_PASSWORD": "***", "MODE": "plain"}
        browser = await create_browser(account)
        for page in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/versions/1"):
            response = await browser.get(page)
            assert response.status_code == 200 and LEGACY not in response.text
    async with owner_engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT spec FROM job_versions WHERE tenant_id = :t AND job_id = :j"),
            {"t": owner.tenant_id, "j": job["id"]},
        )
    assert stored["tasks"][0]["env"]["DB_PASSWORD"] == LEGACY  # the record is not rewritten


def test_masking_copies_and_leaves_clean_specs_alone() -> None:
    clean = {"tasks": [{"env": {"DB_PASSWORD": "${{ secrets.X }}"}, "headers": {}}]}
    assert mask_literal_credentials(clean) is clean
    legacy = {"tasks": [{"headers": {"Authorization": "Bearer abc", "Accept": "x"}}]}
    masked = mask_literal_credentials(legacy)
    assert masked["tasks"][0]["headers"] == {"Authorization": "***", "Accept": "x"}
    assert legacy["tasks"][0]["headers"]["Authorization"] == "Bearer abc"

"""The job page shows the job's webhooks and their latest deliveries, refused ones with
why; another tenant's job page is a 404 and shows nothing of them."""

from __future__ import annotations

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task
from tests.triggers.helpers import create_webhook
from tests.web.helpers import BrowserFactory, assert_page


async def test_the_job_page_lists_webhooks_and_deliveries(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [python_task("noop")], concurrency_policy="forbid")
    hook = await create_webhook(client, owner, job["id"], name="ci-push", mapping={"s": "$.a"})
    accepted = await client.post(hook["url"], json={"a": 1})
    assert accepted.status_code == 201
    assert (await client.post(hook["url"], json={"a": 2})).status_code == 409

    html = assert_page(await (await create_browser(owner)).get(f"/jobs/{job['id']}"))
    assert 'data-testid="job-webhooks"' in html
    assert html.count('data-testid="webhook-row"') == 1
    assert "ci-push" in html and hook["token_prefix"] in html and "s ← $.a" in html
    assert hook["token"] not in html
    assert 'data-outcome="accepted"' in html and 'data-outcome="refused"' in html
    assert accepted.json()["run_id"] in html
    assert "forbids concurrent runs" in html

    other = await (await create_browser(stranger)).get(f"/jobs/{job['id']}")
    assert other.status_code == 404 and "ci-push" not in other.text

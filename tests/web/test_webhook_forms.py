"""The job page's inbound webhook forms: create one (its URL shown once, with its signature
scheme and mapping) and revoke it, through ``triggers.service`` with the API's rules
(``jobs:write``); a refused form changes nothing and says why."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from httpx import AsyncClient

from kernel.signatures import sign_github
from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task
from tests.secrets.helpers import create_secret, secret_name, secret_value
from tests.triggers.helpers import create_webhook
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

HOOK_URL = re.compile(r'data-testid="webhook-url">([^<]+)</pre>')


async def api_webhooks(client: AsyncClient, account: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/jobs/{job_id}/webhooks", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_the_forms_need_a_session(anonymous: Browser) -> None:
    job, hook = uuid.uuid4(), uuid.uuid4()
    for path in (f"/jobs/{job}/webhooks", f"/jobs/{job}/webhooks/{hook}/delete"):
        assert_login_redirect(await anonymous.post(path, {"name": "x"}))


async def test_an_editor_creates_a_signed_webhook_sees_its_url_once_and_revokes_it(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [python_task("noop")], params={"sha": "none"})
    shared, key = secret_value(), secret_name("GH_HOOK")
    await create_secret(client, owner, key, shared)
    browser = await create_browser(await create_member(client, owner, "editor"))
    page = assert_page(await browser.get(f"/jobs/{job['id']}"))
    assert 'data-testid="create-webhook-form"' in page and f'value="{key}"' in page
    assert shared not in page

    created = await browser.post(
        f"/jobs/{job['id']}/webhooks",
        {"name": "github-push", "signature": "github", "secret_name": key,
         "mapping": "sha = $.after\r\nrepo = $.repository.full_name\r\n"},
    )  # fmt: skip
    html = assert_page(created, 201)
    assert created.headers["cache-control"] == "no-store"
    match = HOOK_URL.search(html)
    assert match, html
    url = match.group(1)
    assert url.startswith("http://baton.test/hooks/bwh_")
    assert "X-Hub-Signature-256" in html and key in html
    assert "sha ← $.after" in html and "repo ← $.repository.full_name" in html
    [listed] = await api_webhooks(client, owner, job["id"])
    assert listed["signature"] == "github" and listed["secret_name"] == key
    assert listed["mapping"] == {"sha": "$.after", "repo": "$.repository.full_name"}

    # The URL works: a signed delivery starts a run with the mapped params.
    body = json.dumps({"after": "abc123", "repository": {"full_name": "o/r"}}).encode()
    path = urlsplit(url).path
    started = await client.post(
        path, content=body, headers={"X-Hub-Signature-256": sign_github(shared, body)}
    )
    assert started.status_code == 201, started.text
    run = await client.get(f"/api/v1/runs/{started.json()['run_id']}", headers=owner.headers)
    assert run.json()["params"] == {"sha": "abc123", "repo": "o/r"}

    # Shown once: the job page lists the webhook by its prefix, never the URL again.
    again = assert_page(await browser.get(f"/jobs/{job['id']}"))
    token = path.rsplit("/", 1)[-1]
    assert token not in again and 'data-testid="webhook-created"' not in again
    assert listed["token_prefix"] in again and 'data-outcome="accepted"' in again

    revoked = await browser.post(f"/jobs/{job['id']}/webhooks/{listed['id']}/delete")
    assert revoked.status_code == 303
    assert revoked.headers["location"] == f"/jobs/{job['id']}?notice=webhook-revoked#webhooks"
    html = assert_page(await browser.get(revoked.headers["location"]))
    assert "Webhook revoked" in html and 'data-testid="webhook-row"' not in html
    assert 'data-outcome="accepted"' in html  # its deliveries stay listed
    assert await api_webhooks(client, owner, job["id"]) == []
    assert (await client.post(path, content=body)).status_code == 404


async def test_refused_forms_say_why_and_change_nothing(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    key = secret_name("GH_HOOK")
    await create_secret(client, owner, key, secret_value())
    their_key = secret_name("THEIRS")
    await create_secret(client, stranger, their_key, secret_value())
    for data, why in (
        ({"name": "x", "signature": "github"}, "signature github needs secret_name"),
        ({"name": "x", "secret_name": key}, "secret_name is used only with a signature"),
        ({"name": "x", "signature": "github", "secret_name": "NO_SUCH_SECRET"},
         "No secret named NO_SUCH_SECRET"),
        ({"name": "x", "signature": "github", "secret_name": their_key},
         f"No secret named {their_key}"),
        ({"name": "x", "signature": "hmac"}, "signature"),
        ({"name": ""}, "name"),
        ({"name": "x", "mapping": "sha $.after"}, "line 1: write param = $.path"),
        ({"name": "x", "mapping": "a = $.x\nb = $.y\na = $.z"}, "the param a is mapped twice"),
        ({"name": "x", "mapping": "sha = after"}, "mapping[sha]"),
        ({"name": "x", "signature": "stripe", "secret_name": key, "tolerance_seconds": "abc"},
         "tolerance_seconds"),
        ({"name": "x", "signature": "stripe", "secret_name": key, "tolerance_seconds": "5"},
         "tolerance_seconds"),
    ):  # fmt: skip
        response = await owner_browser.post(f"/jobs/{job['id']}/webhooks", data)
        html = assert_page(response, 422)
        start = html.index('data-testid="create-webhook"')
        assert why in html[start : html.index("<form", start)], why
        assert 'data-testid="webhook-created"' not in html
    assert await api_webhooks(client, owner, job["id"]) == []


async def test_other_tenants_unknown_and_malformed_ids_are_not_found(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser,
    create_browser: BrowserFactory,
) -> None:  # fmt: skip
    job = await create_job(client, owner, [python_task("noop")])
    other_job = await create_job(client, owner, [python_task("noop")])
    hook = await create_webhook(client, owner, job["id"], name="mine")
    theirs = await create_job(client, stranger, [python_task("noop")])
    their_hook = await create_webhook(client, stranger, theirs["id"], name="theirs")
    stranger_browser = await create_browser(stranger)
    for browser, path in (
        (stranger_browser, f"/jobs/{job['id']}/webhooks"),
        (stranger_browser, f"/jobs/{job['id']}/webhooks/{hook['id']}/delete"),
        (stranger_browser, f"/jobs/{theirs['id']}/webhooks/{hook['id']}/delete"),
        (owner_browser, f"/jobs/{theirs['id']}/webhooks"),
        (owner_browser, f"/jobs/{job['id']}/webhooks/{their_hook['id']}/delete"),
        (owner_browser, f"/jobs/{other_job['id']}/webhooks/{hook['id']}/delete"),  # not its job
        (owner_browser, f"/jobs/{uuid.uuid4()}/webhooks"),
        (owner_browser, f"/jobs/{job['id']}/webhooks/{uuid.uuid4()}/delete"),
        (owner_browser, f"/jobs/{job['id']}/webhooks/not-an-id/delete"),
        (owner_browser, "/jobs/not-a-job/webhooks"),
    ):
        response = await browser.post(path, {"name": "sneaky"})
        assert response.status_code == 404, path
    assert [h["name"] for h in await api_webhooks(client, owner, job["id"])] == ["mine"]
    assert await api_webhooks(client, owner, other_job["id"]) == []
    assert [h["name"] for h in await api_webhooks(client, stranger, theirs["id"])] == ["theirs"]


async def test_viewers_and_operators_see_no_forms_and_are_refused(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    hook = await create_webhook(client, owner, job["id"], name="mine")
    for role in ("viewer", "operator"):
        browser = await create_browser(await create_member(client, owner, role))
        html = assert_page(await browser.get(f"/jobs/{job['id']}"))
        assert 'data-testid="webhook-row"' in html
        assert 'data-testid="create-webhook-form"' not in html
        assert 'data-testid="webhook-revoke"' not in html
        for path in (
            f"/jobs/{job['id']}/webhooks",
            f"/jobs/{job['id']}/webhooks/{hook['id']}/delete",
        ):
            assert (await browser.post(path, {"name": "x"})).status_code == 403, (role, path)
    assert [h["name"] for h in await api_webhooks(client, owner, job["id"])] == ["mine"]


async def test_forms_without_csrf_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    await owner_browser.get(f"/jobs/{job['id']}")
    response = await owner_browser.http.post(f"/jobs/{job['id']}/webhooks", data={"name": "x"})
    assert response.status_code == 403 and "csrf_failed" in response.text
    assert await api_webhooks(client, owner, job["id"]) == []

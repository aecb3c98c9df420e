"""The Workers page (/settings/workers): credentials shown once, listed, revoked; the
tenant's connected workers."""

from __future__ import annotations

import asyncio
import html as html_lib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from backend.core.settings import Settings
from kernel.credential import WorkerCredential
from tests.fixtures.execution import worker_config
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page
from tests.workers.factories import create_worker_credential, redis_as, unique_queue
from worker.runner import VERSION, Worker

PAGE = "/settings/workers"
CREATE = "/settings/workers/credentials"
SECRET = re.compile(r'data-testid="credential-secret">([^<]+)<')


async def credentials_of(client: AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/workers/credentials", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_workers_page_needs_a_session_and_an_admin(
    client: AsyncClient, owner: Account, anonymous: Browser, create_browser: BrowserFactory
) -> None:
    created = await create_worker_credential(client, owner)
    revoke = f"{CREATE}/{created['id']}/revoke"
    assert_login_redirect(await anonymous.get(PAGE))
    assert_login_redirect(await anonymous.post(CREATE, {"name": "x", "queue": "default"}))
    assert_login_redirect(await anonymous.post(revoke))
    browser = await create_browser(await create_member(client, owner, "editor"))
    assert "forbidden" in assert_page(await browser.get(PAGE), 403)
    assert_page(await browser.post(CREATE, {"name": "x", "queue": "default"}), 403)
    assert_page(await browser.post(revoke), 403)
    listed = await credentials_of(client, owner)
    assert [(c["id"], c["revoked_at"]) for c in listed] == [(created["id"], None)]


async def test_create_shows_the_credential_once(
    client: AsyncClient, owner: Account, owner_browser: Browser, redis: Redis
) -> None:
    empty = assert_page(await owner_browser.get(PAGE))
    assert 'data-testid="credentials-empty"' in empty
    queue = unique_queue()
    response = await owner_browser.post(
        CREATE, {"name": "build-box", "queue": queue, "expires_in_days": "30"}
    )
    page = assert_page(response, 201)
    assert response.headers["cache-control"] == "no-store"
    match = SECRET.search(page)
    assert match, page
    secret = html_lib.unescape(match.group(1))
    parsed = WorkerCredential.parse(secret)
    assert (parsed.tenant_id, parsed.queue) == (str(owner.tenant_id), queue)
    assert await redis.execute_command("ACL", "GETUSER", parsed.redis_user) is not None
    (listed,) = await credentials_of(client, owner)
    assert (listed["name"], listed["queue"]) == ("build-box", queue)
    reload = assert_page(await owner_browser.get(PAGE))
    assert secret not in reload and 'data-testid="credential-secret"' not in reload
    assert f'data-credential-id="{listed["id"]}"' in reload


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": "", "queue": "default"}, "name"),
        ({"name": "ok", "queue": "Not A Queue"}, "queue"),
        ({"name": "ok", "queue": "default", "expires_in_days": "0"}, "expires_in_days"),
        ({"name": "ok", "queue": "default", "expires_in_days": "soon"}, "expires_in_days"),
    ],
    ids=["empty-name", "bad-queue", "zero-days", "days-text"],
)
async def test_create_errors_render_inline_and_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser, form: dict[str, str], field: str
) -> None:
    html = assert_page(await owner_browser.post(CREATE, form), 422)
    assert f'name="{field}"' in html.split('class="field invalid"', 1)[1].split("</label>", 1)[0]
    assert 'data-testid="credential-secret"' not in html
    assert await credentials_of(client, owner) == []


async def test_revoke_from_the_page(
    client: AsyncClient, owner: Account, owner_browser: Browser, redis: Redis
) -> None:
    created = await create_worker_credential(client, owner)
    response = await owner_browser.post(f"{CREATE}/{created['id']}/revoke")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{PAGE}?notice=credential-revoked"
    assert await redis.execute_command("ACL", "GETUSER", created["redis_user"]) is None
    html = assert_page(await owner_browser.get(response.headers["location"]))
    row = html.split(f'data-credential-id="{created["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="revoked"' in html and 'data-testid="credential-revoke"' not in row


async def test_revoke_refusals(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser, redis: Redis
) -> None:
    theirs = await create_worker_credential(client, stranger)
    for credential_id in (theirs["id"], str(uuid.uuid4())):
        response = await owner_browser.post(f"{CREATE}/{credential_id}/revoke")
        assert "Worker credential not found" in assert_page(response, 404)
    assert_page(await owner_browser.post(f"{CREATE}/not-a-uuid/revoke"), 422)
    assert await redis.execute_command("ACL", "GETUSER", theirs["redis_user"]) is not None


async def test_revoke_over_htmx_redirects_the_whole_page(
    client: AsyncClient, owner: Account, owner_browser: Browser, redis: Redis
) -> None:
    created = await create_worker_credential(client, owner)
    html = assert_page(await owner_browser.get(PAGE))
    assert f'hx-post="{CREATE}/{created["id"]}/revoke"' in html
    response = await owner_browser.htmx("POST", f"{CREATE}/{created['id']}/revoke")
    assert response.status_code == 200, response.text
    assert response.headers["hx-redirect"] == f"{PAGE}?notice=credential-revoked"
    assert await redis.execute_command("ACL", "GETUSER", created["redis_user"]) is None


CELL = re.compile(r"<td>(.*?)</td>", re.S)


async def test_a_live_hosted_worker_is_listed_with_its_queue_version_and_heartbeat(
    client: AsyncClient,
    owner: Account,
    stranger: Account,
    owner_browser: Browser,
    create_browser: BrowserFactory,
    settings: Settings,
) -> None:
    assert settings.redis_url
    created = await create_worker_credential(client, owner)
    credential = WorkerCredential.parse(created["credential"])
    connection = redis_as(created["credential"], settings.redis_url)
    name = f"box-{uuid.uuid4().hex[:6]}"
    config = worker_config(
        name=name,
        queues=(credential.queue,),
        tenant_id=credential.tenant_id,
        concurrency=3,
        heartbeat_seconds=0.2,
    )
    worker = Worker(connection, config)
    started = datetime.now(UTC).replace(microsecond=0)
    task = asyncio.create_task(worker.run())
    try:

        async def page() -> str:
            return assert_page(await owner_browser.get(PAGE))

        html = await eventually(page, lambda text: f'data-name="{name}"' in text, what="the row")
        seen = datetime.now(UTC)
        other_tenant = await create_browser(stranger)
        assert name not in assert_page(await other_tenant.get(PAGE))
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await connection.aclose()
    row = html.split(f'data-name="{name}"', 1)[1].split("</tr>", 1)[0]
    assert row.startswith(' data-hosted="yes"')
    cells = [html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in CELL.findall(row)]
    assert cells[:5] == [name, "yours", credential.queue, VERSION, "0 / 3"]
    beat = datetime.strptime(cells[5], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert started <= beat <= seen  # the worker's own heartbeat, not a stale or made-up one

"""The audit log page (/audit): filters, cursor paging, permissions, the hash-chain badge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import tamper
from tests.fixtures.factories import Account, create_api_token, create_member
from tests.web.helpers import Browser, BrowserFactory

AUDIT = "/audit"
CHAIN = "/audit/chain"
ROW = re.compile(r'data-testid="audit-row" data-seq="(\d+)" data-action="([^"]+)"')
NEXT = re.compile(r'href="([^"]+)" class="button ghost" data-testid="audit-next"')


def rows(response: Response) -> list[tuple[int, str]]:
    """(seq, action) of each event row on the page, in page order."""
    assert response.status_code == 200, response.text
    return [(int(seq), action) for seq, action in ROW.findall(response.text)]


def next_link(response: Response) -> str | None:
    match = NEXT.search(response.text)
    return unquote(match.group(1).replace("&amp;", "&")) if match else None


async def api_events(client: AsyncClient, account: Account, **params: Any) -> list[tuple[int, str]]:
    response = await client.get(
        "/api/v1/audit", params={"limit": 200, **params}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return [(e["seq"], e["action"]) for e in response.json()["items"]]


@pytest.fixture
async def busy(client: AsyncClient, owner: Account) -> Account:
    """The owner's tenant with a member, a revoked token and a refused login."""
    await create_member(client, owner, "editor")
    token = await create_api_token(client, owner, "viewer")
    await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers)
    await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": "wrong-password!"}
    )
    return owner


async def test_audit_page_needs_a_session(anonymous: Browser) -> None:
    for path in (AUDIT, CHAIN):
        response = await anonymous.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["viewer", "operator", "editor"])
async def test_roles_below_admin_are_refused(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory, role: str
) -> None:
    browser = await create_browser(await create_member(client, owner, role))
    for path in (AUDIT, CHAIN):
        response = await browser.get(path)
        assert response.status_code == 403, response.text
        assert "forbidden" in response.text
    nav = await browser.get("/settings/members")
    assert 'href="/audit"' not in nav.text


async def test_the_page_lists_the_same_events_as_the_api(
    client: AsyncClient, busy: Account, create_browser: BrowserFactory
) -> None:
    admin = await create_member(client, busy, "admin")
    browser = await create_browser(admin)
    response = await browser.get(AUDIT)
    assert 'data-testid="audit-table"' in response.text
    assert rows(response) == await api_events(client, busy)
    html = response.text
    for action in ("member.added", "token.created", "token.revoked", "auth.login.failed"):
        assert f'data-action="{action}"' in html
    assert busy.email in html and "203.0.113.7" in html  # actor and ip
    assert 'data-outcome="failure"' in html


async def test_another_tenants_events_never_show(
    client: AsyncClient, busy: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    await create_member(client, stranger, "viewer")
    browser = await create_browser(busy)
    html = (await browser.get(AUDIT)).text
    assert stranger.email not in html
    assert str(stranger.user_id) not in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "member"}, {"action": "member"}),
        ({"action": "token.revoked"}, {"action": "token.revoked"}),
        ({"outcome": "failure"}, {"outcome": "failure"}),
        ({"outcome": "success", "action": "auth"}, {"outcome": "success", "action": "auth"}),
    ],
    ids=["action-prefix", "action-exact", "outcome", "outcome-and-action"],
)
async def test_filters_match_the_api(
    client: AsyncClient,
    busy: Account,
    owner_browser: Browser,
    params: dict[str, str],
    expected: dict[str, str],
) -> None:
    shown = rows(await owner_browser.get(AUDIT, params=params))
    assert shown, "the filter matched nothing"
    assert shown == await api_events(client, busy, **expected)
    if "outcome" in params:
        page = (await owner_browser.get(AUDIT, params=params)).text
        assert f'<option value="{params["outcome"]}" selected>' in page


async def test_actor_filter_by_email(
    client: AsyncClient, busy: Account, owner_browser: Browser
) -> None:
    member = await create_member(client, busy, "viewer")
    shown = rows(await owner_browser.get(AUDIT, params={"actor": member.email.upper()}))
    assert [action for _, action in shown] == ["auth.login.succeeded"]


async def test_time_range_filter(busy: Account, owner_browser: Browser) -> None:
    now = datetime.now(UTC)
    recent = rows(
        await owner_browser.get(
            AUDIT, params={"since": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")}
        )
    )
    assert recent
    future = await owner_browser.get(
        AUDIT, params={"since": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")}
    )
    assert rows(future) == []
    assert 'data-testid="audit-empty"' in future.text
    assert "No events match these filters." in future.text
    past = await owner_browser.get(AUDIT, params={"until": "2000-01-01T00:00"})
    assert rows(past) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-45T99:00"}, "until"),
        ({"since": "2024-02-01T00:00", "until": "2024-01-01T00:00"}, "until"),
        ({"outcome": "maybe"}, "outcome"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"action": "a" * 101}, "action"),
    ],
    ids=[
        "since-text",
        "until-bad-date",
        "until-before-since",
        "outcome",
        "cursor",
        "cursor-0",
        "long-action",
    ],
)
async def test_bad_filters_are_422_with_the_field_marked(
    busy: Account, owner_browser: Browser, params: dict[str, str], field: str
) -> None:
    response = await owner_browser.get(AUDIT, params=params)
    assert response.status_code == 422, response.text
    assert "field-error" in response.text
    assert ROW.findall(response.text) == []
    if field != "cursor":
        assert f'name="{field}"' in response.text.split('class="field invalid"', 1)[1]
    too_long = await owner_browser.get(AUDIT, params={"actor": "x" * 321})
    assert too_long.status_code == 422


async def test_paging_with_the_cursor_keeps_the_filters(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    for _ in range(55):
        await create_api_token(client, owner, "viewer")
    first = await owner_browser.get(AUDIT, params={"action": "token"})
    first_rows = rows(first)
    assert len(first_rows) == 50
    link = next_link(first)
    assert link is not None and "action=token" in link and "cursor=" in link
    second = await owner_browser.get(link)
    second_rows = rows(second)
    assert len(second_rows) == 5
    assert next_link(second) is None
    assert {a for _, a in first_rows + second_rows} == {"token.created"}
    seqs = [s for s, _ in first_rows + second_rows]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 55


async def test_chain_badge_intact_then_broken(
    busy: Account, owner_browser: Browser, owner_engine: AsyncEngine
) -> None:
    page = (await owner_browser.get(AUDIT)).text
    assert 'hx-get="/audit/chain"' in page and 'data-state="checking"' in page
    intact = await owner_browser.get(CHAIN)
    assert intact.status_code == 200
    assert 'data-testid="audit-chain" data-state="intact"' in intact.text
    await tamper(
        owner_engine,
        "UPDATE audit_events SET ip = '192.0.2.1' WHERE tenant_id = :t AND seq = 2",
        t=busy.tenant_id,
    )
    broken = await owner_browser.get(CHAIN)
    assert 'data-state="broken"' in broken.text
    assert 'data-broken-seq="2"' in broken.text

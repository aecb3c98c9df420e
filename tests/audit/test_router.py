"""GET /api/v1/audit: filters, cursor paging, permissions, tenant isolation, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    Account,
    bearer,
    create_api_token,
    create_member,
    create_tenant,
)

AUDIT = "/api/v1/audit"


async def _all_pages(
    client: AsyncClient, account: Account, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of the query, following next_cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(AUDIT, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not end"


async def _items(client: AsyncClient, account: Account, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(AUDIT, params={"limit": 200, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.fixture
async def busy(client: AsyncClient) -> Account:
    """A tenant with a varied log: signup, a member, tokens, good and bad logins."""
    account = await create_tenant(client)
    await create_member(client, account, "editor")  # member.added + auth.login.succeeded
    token = await create_api_token(client, account, "viewer")
    await client.delete(f"/api/v1/tokens/{token['id']}", headers=account.headers)
    await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "wrong-password!"}
    )
    await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    return account


async def test_lists_events_newest_first_with_every_field(
    client: AsyncClient, busy: Account
) -> None:
    items = await _items(client, busy)
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs == list(range(len(items), 0, -1))
    assert [i["action"] for i in reversed(items)] == [
        "tenant.created",
        "member.added",
        "member.added",
        "auth.login.succeeded",
        "token.created",
        "token.revoked",
        "auth.login.failed",
        "auth.login.succeeded",
    ]
    newest = items[0]
    assert set(newest) == {
        "id",
        "seq",
        "occurred_at",
        "actor_type",
        "actor_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "outcome",
        "ip",
        "user_agent",
        "request_id",
        "details",
        "hash",
    }
    assert newest["ip"] == "203.0.113.7"
    assert newest["actor_label"] == busy.email
    failed = next(i for i in items if i["action"] == "auth.login.failed")
    assert failed["outcome"] == "failure"


async def test_default_limit_is_50(client: AsyncClient, owner: Account) -> None:
    for i in range(25):
        token = await create_api_token(client, owner, "viewer", name=f"n{i}")
        await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers)
    response = await client.get(AUDIT, headers=owner.headers)
    body = response.json()
    assert len(body["items"]) == 50  # of 52 events
    assert body["next_cursor"] == str(body["items"][-1]["seq"])
    rest = await client.get(AUDIT, params={"cursor": body["next_cursor"]}, headers=owner.headers)
    assert [i["seq"] for i in rest.json()["items"]] == [2, 1]


async def test_filter_by_exact_action(client: AsyncClient, busy: Account) -> None:
    items = await _items(client, busy, action="auth.login.succeeded")
    assert len(items) == 2
    assert {i["action"] for i in items} == {"auth.login.succeeded"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("auth", {"auth.login.succeeded", "auth.login.failed"}),
        ("auth.login", {"auth.login.succeeded", "auth.login.failed"}),
        ("token", {"token.created", "token.revoked"}),
        ("member", {"member.added"}),
        ("tenant", {"tenant.created"}),
    ],
)
async def test_filter_by_dotted_prefix(
    prefix: str, expected: set[str], client: AsyncClient, busy: Account
) -> None:
    assert {i["action"] for i in await _items(client, busy, action=prefix)} == expected


@pytest.mark.parametrize(
    "action", ["aut", "auth.log", "auth.login.succeeded.more", "nothing", "%", "_uth", "auth.%"]
)
async def test_action_filter_matches_only_whole_dotted_segments(
    action: str, client: AsyncClient, busy: Account
) -> None:
    """Not a substring search, and LIKE wildcards in the filter are literal characters."""
    assert await _items(client, busy, action=action) == []


async def test_filter_by_actor_id_and_email(client: AsyncClient, busy: Account) -> None:
    added = await _items(client, busy, action="member.added")
    assert {i["actor_id"] for i in added} == {str(busy.user_id)}  # the owner added both

    by_id = await _items(client, busy, actor=str(busy.user_id))
    by_email = await _items(client, busy, actor=busy.email)
    by_upper_email = await _items(client, busy, actor=busy.email.upper())
    assert by_id and by_id == by_email == by_upper_email
    assert {i["actor_id"] for i in by_id} == {str(busy.user_id)}
    everything = await _items(client, busy)
    others = [i for i in everything if i["actor_id"] != str(busy.user_id)]
    assert len(others) == 1 and others[0]["action"] == "auth.login.succeeded"  # the editor
    assert len(by_id) == len(everything) - 1
    assert await _items(client, busy, actor="nobody@example.com") == []


async def test_filter_by_token_actor(client: AsyncClient, owner: Account) -> None:
    token = await create_api_token(client, owner, "admin")
    made = await client.post(
        "/api/v1/tokens",
        json={"name": "by-token", "role": "viewer"},
        headers=bearer(token["token"]),
    )
    assert made.status_code == 201
    items = await _items(client, owner, actor=token["id"])
    assert [(i["actor_type"], i["action"]) for i in items] == [("token", "token.created")]


async def test_filters_combine(client: AsyncClient, busy: Account) -> None:
    items = await _items(client, busy, action="auth", actor=busy.email)
    assert {i["action"] for i in items} == {"auth.login.failed", "auth.login.succeeded"}
    assert len(items) == 2


async def test_filter_by_since_and_until(client: AsyncClient, busy: Account) -> None:
    everything = await _items(client, busy)
    oldest_first = list(reversed(everything))
    pivot = oldest_first[3]
    at = pivot["occurred_at"]

    since = await _items(client, busy, since=at)
    until = await _items(client, busy, until=at)
    assert pivot["seq"] in {i["seq"] for i in since}  # since is inclusive
    assert pivot["seq"] not in {i["seq"] for i in until}  # until is exclusive
    assert {i["seq"] for i in since} | {i["seq"] for i in until} == {i["seq"] for i in everything}
    assert not {i["seq"] for i in since} & {i["seq"] for i in until}

    window = await _items(
        client, busy, since=oldest_first[1]["occurred_at"], until=oldest_first[-1]["occurred_at"]
    )
    assert oldest_first[0]["seq"] not in {i["seq"] for i in window}
    assert oldest_first[-1]["seq"] not in {i["seq"] for i in window}
    assert oldest_first[1]["seq"] in {i["seq"] for i in window}

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=365)).isoformat()
    assert await _items(client, busy, since=future) == []
    assert await _items(client, busy, until=past) == []
    assert len(await _items(client, busy, since=past, until=future)) == len(everything)


async def test_since_in_another_timezone_and_with_z_suffix(
    client: AsyncClient, busy: Account
) -> None:
    everything = await _items(client, busy)
    pivot = datetime.fromisoformat(list(reversed(everything))[3]["occurred_at"])
    in_utc = pivot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    in_tokyo = pivot.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    a = await _items(client, busy, since=in_utc)
    b = await _items(client, busy, since=in_tokyo)
    assert a == b
    assert len(a) == len(everything) - 3


async def test_since_without_timezone_is_not_a_server_error(
    client: AsyncClient, busy: Account
) -> None:
    response = await client.get(
        AUDIT, params={"since": "2000-01-01T00:00:00"}, headers=busy.headers
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == len(await _items(client, busy))


async def test_cursor_paging_reaches_every_event_once(client: AsyncClient, busy: Account) -> None:
    everything = await _items(client, busy)
    pages = await _all_pages(client, busy, limit=2)
    assert all(len(page) == 2 for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= 2
    flat = [i["seq"] for page in pages for i in page]
    assert flat == [i["seq"] for i in everything]
    assert len(flat) == len(set(flat))
    assert flat == sorted(flat, reverse=True)
    assert [i["id"] for page in pages for i in page] == [i["id"] for i in everything]


async def test_cursor_paging_with_an_exact_multiple_ends_without_an_empty_page(
    client: AsyncClient, busy: Account
) -> None:
    total = len(await _items(client, busy))
    assert total % 2 == 0
    pages = await _all_pages(client, busy, limit=2)
    assert len(pages) == total // 2
    assert all(pages)


async def test_cursor_paging_with_a_filter(client: AsyncClient, busy: Account) -> None:
    pages = await _all_pages(client, busy, limit=1, action="auth")
    assert [len(p) for p in pages] == [1, 1, 1]
    assert [p[0]["action"] for p in pages] == [
        "auth.login.succeeded",
        "auth.login.failed",
        "auth.login.succeeded",
    ]


async def test_next_cursor_is_null_when_everything_fits(client: AsyncClient, busy: Account) -> None:
    response = await client.get(AUDIT, params={"limit": 200}, headers=busy.headers)
    assert response.json()["next_cursor"] is None


async def test_cursor_beyond_the_oldest_event_gives_an_empty_page(
    client: AsyncClient, busy: Account
) -> None:
    response = await client.get(AUDIT, params={"cursor": 1}, headers=busy.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("role", ["viewer", "operator", "editor"])
async def test_roles_below_admin_are_forbidden(
    role: str, client: AsyncClient, owner: Account
) -> None:
    member = await create_member(client, owner, role)
    response = await client.get(AUDIT, headers=member.headers)
    assert_error(response, 403, "forbidden")
    assert response.json()["error"]["code"] == "forbidden"


async def test_admin_and_admin_tokens_may_read(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    assert (await client.get(AUDIT, headers=admin.headers)).status_code == 200
    token = await create_api_token(client, owner, "admin")
    assert (await client.get(AUDIT, headers=bearer(token["token"]))).status_code == 200
    viewer_token = await create_api_token(client, owner, "viewer")
    denied = await client.get(AUDIT, headers=bearer(viewer_token["token"]))
    assert_error(denied, 403, "forbidden")


async def test_anonymous_is_unauthenticated(client: AsyncClient) -> None:
    response = await client.get(AUDIT)
    assert_error(response, 401, "unauthenticated")
    assert response.json()["error"]["code"] == "unauthenticated"
    assert "x-request-id" in response.headers
    garbage = await client.get(AUDIT, headers=bearer("not-a-token"))
    assert_error(garbage, 401, "invalid_token")


async def test_another_tenant_never_sees_these_events(
    client: AsyncClient, busy: Account, stranger: Account
) -> None:
    mine = {i["id"] for i in await _items(client, busy)}
    theirs = await _items(client, stranger)
    assert theirs
    assert not mine & {i["id"] for i in theirs}
    assert {i["actor_id"] for i in theirs} == {str(stranger.user_id)}
    for params in (
        {"actor": busy.email},
        {"actor": str(busy.user_id)},
        {"action": "token"},
    ):
        assert await _items(client, stranger, **params) == [], params


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1000",
        "limit=201",
        "limit=-5",
        "limit=abc",
        "cursor=-1",
        "cursor=0",
        "cursor=abc",
        f"cursor={2**63}",
        "since=garbage",
        "until=garbage",
        "since=2024-13-45",
        f"action={'a' * 101}",
        f"actor={'a' * 321}",
    ],
)
async def test_bad_parameters_are_422(query: str, client: AsyncClient, owner: Account) -> None:
    response = await client.get(f"{AUDIT}?{query}", headers=owner.headers)
    assert_error(response, 422, "validation_failed")
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"][0]["loc"][0] == "query"
    assert "x-request-id" in response.headers


async def test_filters_with_url_special_characters_are_safe(
    client: AsyncClient, busy: Account
) -> None:
    for value in ("auth'; DROP TABLE audit_events; --", "auth\\", "a b", "ü"):
        response = await client.get(
            f"{AUDIT}?action={quote(value)}&actor={quote(value)}", headers=busy.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []

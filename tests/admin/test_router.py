"""/api/v1/admin: platform administrators only; keyset paging over every tenant."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    Account,
    bearer,
    create_api_token,
    create_member,
    create_tenant,
    make_superuser,
)

URL = "/api/v1/admin/tenants"


async def walk(
    client: AsyncClient, account: Account, limit: int, max_pages: int = 10_000
) -> list[dict[str, Any]]:
    """Every tenant, following ``next_cursor`` until it is null."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(URL, params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


async def tenant_count(owner_engine: AsyncEngine) -> int:
    async with owner_engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM tenants"))).scalar_one())


async def test_anonymous(client: AsyncClient) -> None:
    response = await client.get(URL)
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
async def test_tenant_roles_are_not_platform_admins(
    client: AsyncClient, owner: Account, role: str
) -> None:
    account = owner if role == "owner" else await create_member(client, owner, role)
    assert_error(await client.get(URL, headers=account.headers), 403, "forbidden")


async def test_superuser_lists_tenants(
    client: AsyncClient, superuser: Account, owner: Account, stranger: Account
) -> None:
    response = await client.get(URL, headers=superuser.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    by_id = {item["id"]: item for item in page["items"]}
    for account in (owner, stranger, superuser):
        item = by_id[str(account.tenant_id)]
        assert set(item) == {"id", "slug", "name", "plan", "status", "created_at", "usage"}
        assert item["slug"] == account.tenant_slug
        assert (item["plan"], item["status"]) == ("free", "active")
    # Newest first.
    created = [item["created_at"] for item in page["items"]]
    assert created == sorted(created, reverse=True)
    assert page["items"][0]["id"] == str(stranger.tenant_id)


async def test_superuser_flag_is_read_on_every_request(
    client: AsyncClient, owner_engine: AsyncEngine, superuser: Account
) -> None:
    assert (await client.get(URL, headers=superuser.headers)).status_code == 200
    await make_superuser(owner_engine, superuser, value=False)
    assert_error(await client.get(URL, headers=superuser.headers), 403, "forbidden")


async def test_superusers_api_token_is_not_a_platform_admin(
    client: AsyncClient, superuser: Account
) -> None:
    token = (await create_api_token(client, superuser, "owner"))["token"]
    assert_error(await client.get(URL, headers=bearer(token)), 403, "forbidden")


async def test_paging_with_limit_one(client: AsyncClient, superuser: Account) -> None:
    newest = [await create_tenant(client) for _ in range(3)][::-1]
    first = (await client.get(URL, params={"limit": 1}, headers=superuser.headers)).json()
    assert [i["id"] for i in first["items"]] == [str(newest[0].tenant_id)]
    assert first["next_cursor"]
    second = (
        await client.get(
            URL, params={"limit": 1, "cursor": first["next_cursor"]}, headers=superuser.headers
        )
    ).json()
    assert [i["id"] for i in second["items"]] == [str(newest[1].tenant_id)]
    third = (
        await client.get(
            URL, params={"limit": 2, "cursor": second["next_cursor"]}, headers=superuser.headers
        )
    ).json()
    assert [i["id"] for i in third["items"]][:1] == [str(newest[2].tenant_id)]


async def test_walking_every_page_sees_every_tenant_once(
    client: AsyncClient, superuser: Account, owner_engine: AsyncEngine
) -> None:
    await create_tenant(client)
    items = await walk(client, superuser, limit=7)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)), "a tenant appeared on two pages"
    assert len(ids) == await tenant_count(owner_engine)
    assert str(superuser.tenant_id) in ids


async def test_tenants_created_at_the_same_instant_are_not_skipped(
    client: AsyncClient, superuser: Account, owner_engine: AsyncEngine
) -> None:
    """Ties on ``created_at`` (a bulk import, one transaction's now()) must not lose rows."""
    twins = [await create_tenant(client) for _ in range(3)]
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE tenants SET created_at = '2999-01-01T00:00:00Z' WHERE id = ANY(:ids)"),
            {"ids": [t.tenant_id for t in twins]},
        )
    try:
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(3):
            params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            response = await client.get(URL, params=params, headers=superuser.headers)
            assert response.status_code == 200, response.text
            seen += [i["id"] for i in response.json()["items"]]
            cursor = response.json()["next_cursor"]
        # The three twins are the newest tenants: the first three pages must hold them all.
        assert sorted(seen) == sorted(str(t.tenant_id) for t in twins)
    finally:
        # Leave no tenants in 2999 behind to reorder other tests' pages.
        async with owner_engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE tenants SET created_at = now() - interval '1 day' WHERE id = ANY(:ids)"
                ),
                {"ids": [t.tenant_id for t in twins]},
            )


async def test_cursor_can_be_pasted_into_a_url_unencoded(
    client: AsyncClient, superuser: Account
) -> None:
    await create_tenant(client)
    first = (await client.get(URL, params={"limit": 1}, headers=superuser.headers)).json()
    cursor = first["next_cursor"]
    assert quote(cursor, safe=":") == cursor, "the cursor needs URL-encoding"
    response = await client.get(f"{URL}?limit=1&cursor={cursor}", headers=superuser.headers)
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["id"] != first["items"][0]["id"]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "2024-13-45T99:00:00"},
        {"cursor": ""},
        {"cursor": "2024-01-01T00:00:00_" + "0" * 32},
        {"cursor": "2024-01-01T00:00:00Z_not-a-uuid"},
        {"cursor": "2024-01-01T00:00:00Z_" + "0" * 32 + "_extra"},
        {"cursor": "x" * 101},
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
    ],
    ids=[
        "garbage",
        "bad-date",
        "empty",
        "naive-date",
        "bad-id",
        "extra-part",
        "too-long",
        "limit-0",
        "limit-201",
        "limit-text",
    ],
)
async def test_bad_query(client: AsyncClient, superuser: Account, params: dict[str, Any]) -> None:
    response = await client.get(URL, params=params, headers=superuser.headers)
    assert_error(response, 422, "validation_failed")


async def test_bad_cursor_is_checked_only_after_authorization(
    client: AsyncClient, owner: Account
) -> None:
    params = {"cursor": "not-a-cursor"}
    assert_error(await client.get(URL, params=params), 401, "unauthenticated")
    assert_error(await client.get(URL, params=params, headers=owner.headers), 403, "forbidden")


async def test_the_tenant_list_shows_usage(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    await make_superuser(owner_engine, owner)
    spec = {
        "name": "usage-job",
        "tasks": [{"name": "a", "type": "python", "function": "worker.builtins:noop"}],
    }
    job = await client.post("/api/v1/jobs", json=spec, headers=owner.headers)
    assert job.status_code == 201, job.text
    run = await client.post(
        f"/api/v1/jobs/{job.json()['id']}/runs",
        json={"delay_seconds": 3600},
        headers=owner.headers,
    )
    assert run.status_code == 201, run.text
    page = (await client.get(URL, params={"limit": 5}, headers=owner.headers)).json()
    mine = next(t for t in page["items"] if t["id"] == str(owner.tenant_id))
    assert mine["usage"] == {"jobs": 1, "runs_last_24h": 1, "running_tasks": 0}

"""/api/v1/tokens: creation, hashing at rest, role ceiling, expiry, revocation, isolation."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    bearer,
    create_api_token,
    create_member,
    unique_email,
)


async def tampered(
    owner_engine: AsyncEngine, tenant_id: uuid.UUID, sql: str, **params: object
) -> list[dict[str, Any]]:
    """Run ``sql`` as the database owner inside ``tenant_id``'s row-level security scope."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )
        result = await conn.execute(text(sql), params)
        return [dict(row) for row in result.mappings().all()] if result.returns_rows else []


async def token_events(client: AsyncClient, owner: Account) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/audit", params={"action": "token", "limit": 200}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def me(client: AsyncClient, token: str) -> Response:
    return await client.get("/api/v1/me", headers=bearer(token))


# ----------------------------------------------------------------------------------- create


async def test_create_token(client: AsyncClient, owner: Account) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/api/v1/tokens",
        json={"name": "ci", "role": "editor", "expires_in_days": 7},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {"id", "token", "prefix", "role", "expires_at"}
    uuid.UUID(body["id"])
    assert body["name"] == "ci"
    assert body["role"] == "editor"
    assert body["created_by"] == str(owner.user_id)
    assert body["revoked_at"] is None
    assert body["last_used_at"] is None
    assert body["token"].startswith(f"bat_{owner.tenant_id.hex}_")
    # The prefix shows the start of the secret, so tokens of one tenant can be told apart.
    assert body["prefix"] == "bat_" + body["token"].split("_", 2)[2][:8]
    assert len(body["token"].split("_", 2)[2]) >= 32
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(days=7) - timedelta(minutes=1) < expires_at
    assert expires_at < datetime.now(UTC) + timedelta(days=7, minutes=1)


async def test_tokens_of_one_tenant_have_distinct_prefixes(
    client: AsyncClient, owner: Account
) -> None:
    prefixes = {(await create_api_token(client, owner, "viewer"))["prefix"] for _ in range(3)}
    assert len(prefixes) == 3


async def test_create_token_without_expiry(client: AsyncClient, owner: Account) -> None:
    body = await create_api_token(client, owner, "viewer")
    assert body["expires_at"] is None


async def test_each_token_is_a_new_secret(client: AsyncClient, owner: Account) -> None:
    first = await create_api_token(client, owner, "viewer")
    second = await create_api_token(client, owner, "viewer")
    assert first["id"] != second["id"]
    assert first["token"] != second["token"]


async def test_token_authenticates_as_api_token(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "editor")
    response = await me(client, created["token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["auth"] == "api_token"
    assert body["role"] == "editor"
    assert body["user"] == {"id": str(owner.user_id), "email": owner.email}
    assert body["tenant"]["id"] == str(owner.tenant_id)


@pytest.mark.parametrize("role", ["owner", "admin", "editor", "operator", "viewer"])
async def test_owner_can_create_every_role(client: AsyncClient, owner: Account, role: str) -> None:
    created = await create_api_token(client, owner, role)
    assert created["role"] == role
    assert (await me(client, created["token"])).json()["role"] == role


async def test_token_role_limits_what_it_can_do(client: AsyncClient, owner: Account) -> None:
    viewer_token = (await create_api_token(client, owner, "viewer"))["token"]
    assert (await client.get("/api/v1/members", headers=bearer(viewer_token))).status_code == 200
    assert_error(await client.get("/api/v1/tokens", headers=bearer(viewer_token)), 403, "forbidden")
    response = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "viewer", "password": DEFAULT_PASSWORD},
        headers=bearer(viewer_token),
    )
    assert_error(response, 403, "forbidden")


async def test_admin_can_create_admin_token(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    created = await create_api_token(client, admin, "admin")
    assert created["created_by"] == str(admin.user_id)
    assert (await me(client, created["token"])).json()["role"] == "admin"


async def test_admin_cannot_create_owner_token(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    response = await client.post(
        "/api/v1/tokens", json={"name": "escalate", "role": "owner"}, headers=admin.headers
    )
    assert_error(response, 403, "forbidden")
    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert listed == []


async def test_admin_token_cannot_mint_an_owner_token(client: AsyncClient, owner: Account) -> None:
    admin_token = (await create_api_token(client, owner, "admin"))["token"]
    response = await client.post(
        "/api/v1/tokens", json={"name": "escalate", "role": "owner"}, headers=bearer(admin_token)
    )
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("role", ["editor", "operator", "viewer"])
async def test_below_admin_cannot_manage_tokens(
    client: AsyncClient, owner: Account, role: str
) -> None:
    member = await create_member(client, owner, role)
    existing = await create_api_token(client, owner, "viewer")
    response = await client.post(
        "/api/v1/tokens", json={"name": "mine", "role": "viewer"}, headers=member.headers
    )
    assert_error(response, 403, "forbidden")
    assert_error(await client.get("/api/v1/tokens", headers=member.headers), 403, "forbidden")
    response = await client.delete(f"/api/v1/tokens/{existing['id']}", headers=member.headers)
    assert_error(response, 403, "forbidden")
    assert (await me(client, existing["token"])).status_code == 200


async def test_token_endpoints_anonymous(client: AsyncClient, owner: Account) -> None:
    existing = await create_api_token(client, owner, "viewer")
    assert_error(
        await client.post("/api/v1/tokens", json={"name": "x", "role": "viewer"}),
        401,
        "unauthenticated",
    )
    assert_error(await client.get("/api/v1/tokens"), 401, "unauthenticated")
    assert_error(await client.delete(f"/api/v1/tokens/{existing['id']}"), 401, "unauthenticated")
    assert (await me(client, existing["token"])).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": None},
        {"role": "superuser"},
        {"role": None},
        {"expires_in_days": 0},
        {"expires_in_days": -1},
        {"expires_in_days": 3651},
        {"expires_in_days": "soon"},
        {"token": "bat_chosen_by_the_client"},
        {"created_by": str(uuid.UUID(int=1))},
    ],
    ids=lambda p: ",".join(f"{k}={v!s:.10}" for k, v in p.items()),
)
async def test_create_token_invalid_body(
    client: AsyncClient, owner: Account, payload: dict[str, Any]
) -> None:
    body = {"name": "ci", "role": "viewer", **payload}
    response = await client.post("/api/v1/tokens", json=body, headers=owner.headers)
    assert_error(response, 422, "validation_failed")
    assert (await client.get("/api/v1/tokens", headers=owner.headers)).json() == []


# --------------------------------------------------------------------- secrets and storage


async def test_secret_is_not_listed(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "editor")
    response = await client.get("/api/v1/tokens", headers=owner.headers)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [t["id"] for t in listed] == [created["id"]]
    entry = listed[0]
    assert "token" not in entry
    assert "token_hash" not in entry
    assert entry["prefix"] == created["prefix"]
    assert entry["name"] == created["name"]
    assert entry["role"] == "editor"
    secret = created["token"].split("_", 2)[2]
    assert created["token"] not in response.text
    assert secret not in response.text
    assert hashlib.sha256(created["token"].encode()).hexdigest() not in response.text


async def test_listing_is_newest_first_and_per_tenant(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    first = await create_api_token(client, owner, "viewer")
    second = await create_api_token(client, owner, "editor")
    theirs = await create_api_token(client, stranger, "viewer")
    mine = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert [t["id"] for t in mine] == [second["id"], first["id"]]
    listed_by_them = (await client.get("/api/v1/tokens", headers=stranger.headers)).json()
    assert [t["id"] for t in listed_by_them] == [theirs["id"]]


async def test_secret_is_stored_only_hashed(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    created = await create_api_token(client, owner, "editor")
    raw, secret = created["token"], created["token"].split("_", 2)[2]
    rows = await tampered(
        owner_engine,
        owner.tenant_id,
        "SELECT * FROM api_tokens WHERE id = :id",
        id=uuid.UUID(created["id"]),
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] != raw
    assert row["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    for column, value in row.items():
        assert value != raw, column
        assert secret not in str(value), column


async def test_last_used_is_recorded(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "viewer")
    assert (await me(client, created["token"])).status_code == 200
    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert listed[0]["last_used_at"] is not None


# ------------------------------------------------------------------- creator's role ceiling


async def test_token_is_capped_by_its_creators_current_role(
    client: AsyncClient, owner: Account
) -> None:
    admin = await create_member(client, owner, "admin")
    token = (await create_api_token(client, admin, "admin"))["token"]
    new_member = {"email": unique_email(), "role": "viewer", "password": DEFAULT_PASSWORD}
    assert (await me(client, token)).json()["role"] == "admin"

    demoted = await client.patch(
        f"/api/v1/members/{admin.user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert demoted.status_code == 200, demoted.text

    assert (await me(client, token)).json()["role"] == "viewer"
    response = await client.post("/api/v1/members", json=new_member, headers=bearer(token))
    assert_error(response, 403, "forbidden")
    assert_error(await client.get("/api/v1/tokens", headers=bearer(token)), 403, "forbidden")
    # The token's own role is unchanged; restoring the creator restores the token.
    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert listed[0]["role"] == "admin"
    restored = await client.patch(
        f"/api/v1/members/{admin.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    assert restored.status_code == 200, restored.text
    response = await client.post("/api/v1/members", json=new_member, headers=bearer(token))
    assert response.status_code == 201, response.text


async def test_token_below_its_creators_role_keeps_its_own_role(
    client: AsyncClient, owner: Account
) -> None:
    admin = await create_member(client, owner, "admin")
    token = (await create_api_token(client, admin, "operator"))["token"]
    promoted = await client.patch(
        f"/api/v1/members/{admin.user_id}", json={"role": "owner"}, headers=owner.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert (await me(client, token)).json()["role"] == "operator"


async def test_token_of_a_removed_creator_stops_working(
    client: AsyncClient, owner: Account
) -> None:
    admin = await create_member(client, owner, "admin")
    token = (await create_api_token(client, admin, "viewer"))["token"]
    assert (await me(client, token)).status_code == 200
    response = await client.delete(f"/api/v1/members/{admin.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert_error(await me(client, token), 401, "invalid_token")


# --------------------------------------------------------------------------------- expiry


async def test_expired_token_is_refused(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    created = await create_api_token(client, owner, "viewer", expires_in_days=1)
    assert (await me(client, created["token"])).status_code == 200
    await tampered(
        owner_engine,
        owner.tenant_id,
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = :id",
        id=uuid.UUID(created["id"]),
    )
    error = assert_error(await me(client, created["token"]), 401, "invalid_token")
    assert "expired" in error["message"].lower()


async def test_token_without_expiry_keeps_working(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    created = await create_api_token(client, owner, "viewer")
    await tampered(
        owner_engine,
        owner.tenant_id,
        "UPDATE api_tokens SET created_at = now() - interval '10 years' WHERE id = :id",
        id=uuid.UUID(created["id"]),
    )
    response = await me(client, created["token"])
    assert response.status_code == 200, response.text
    assert response.json()["tenant"]["id"] == str(owner.tenant_id)


async def test_token_of_a_suspended_tenant_is_refused(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    created = await create_api_token(client, owner, "viewer")
    await tampered(
        owner_engine,
        owner.tenant_id,
        "UPDATE tenants SET status = 'suspended' WHERE id = :id",
        id=owner.tenant_id,
    )
    assert_error(await me(client, created["token"]), 403, "tenant_suspended")


# ------------------------------------------------------------------------------------ revoke


async def test_revoke_token(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "editor")
    assert (await me(client, created["token"])).status_code == 200
    response = await client.delete(f"/api/v1/tokens/{created['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error(await me(client, created["token"]), 401, "invalid_token")
    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert listed[0]["id"] == created["id"]
    assert listed[0]["revoked_at"] is not None


async def test_revoke_is_idempotent(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "viewer")
    for _ in range(2):
        response = await client.delete(f"/api/v1/tokens/{created['id']}", headers=owner.headers)
        assert response.status_code == 204, response.text
    revoked = [e for e in await token_events(client, owner) if e["action"] == "token.revoked"]
    assert len(revoked) == 1


async def test_token_can_revoke_itself(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "admin")
    response = await client.delete(
        f"/api/v1/tokens/{created['id']}", headers=bearer(created["token"])
    )
    assert response.status_code == 204, response.text
    assert_error(await me(client, created["token"]), 401, "invalid_token")


async def test_admin_can_revoke_a_token_of_the_owner(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    created = await create_api_token(client, owner, "viewer")
    assert (await me(client, created["token"])).status_code == 200
    response = await client.delete(f"/api/v1/tokens/{created['id']}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert_error(await me(client, created["token"]), 401, "invalid_token")


async def test_revoke_another_tenants_token(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    theirs = await create_api_token(client, stranger, "admin")
    response = await client.delete(f"/api/v1/tokens/{theirs['id']}", headers=owner.headers)
    assert_error(response, 404, "not_found")
    assert theirs["name"] not in response.text
    assert (await me(client, theirs["token"])).status_code == 200
    listed = (await client.get("/api/v1/tokens", headers=stranger.headers)).json()
    assert listed[0]["revoked_at"] is None
    assert all(e["target_id"] != theirs["id"] for e in await token_events(client, owner))


async def test_revoke_unknown_token(client: AsyncClient, owner: Account) -> None:
    response = await client.delete(f"/api/v1/tokens/{uuid.uuid4()}", headers=owner.headers)
    assert_error(response, 404, "not_found")


async def test_revoke_malformed_id(client: AsyncClient, owner: Account) -> None:
    response = await client.delete("/api/v1/tokens/not-a-uuid", headers=owner.headers)
    assert_error(response, 422, "validation_failed")


# ------------------------------------------------------------------------- forged tokens


async def test_token_with_another_tenants_id_is_refused(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    created = await create_api_token(client, owner, "owner")
    forged = created["token"].replace(owner.tenant_id.hex, stranger.tenant_id.hex, 1)
    assert forged != created["token"]
    assert_error(await me(client, forged), 401, "invalid_token")
    assert_error(await client.get("/api/v1/members", headers=bearer(forged)), 401, "invalid_token")
    # The genuine token still works, in its own tenant only.
    assert (await me(client, created["token"])).json()["tenant"]["id"] == str(owner.tenant_id)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw, tenant: raw.replace(tenant.hex, uuid.uuid4().hex, 1),
        lambda raw, tenant: raw[:-1] + ("A" if raw[-1] != "A" else "B"),
        lambda raw, tenant: raw.replace("bat_", "brt_", 1),
        lambda raw, tenant: raw.replace(tenant.hex, "zz" * 16, 1),
        lambda raw, tenant: "_".join(raw.split("_", 2)[:2]) + "_short",
        lambda raw, tenant: raw + "x",
    ],
    ids=["unknown-tenant", "secret-changed", "refresh-prefix", "non-hex", "short", "suffix"],
)
async def test_mangled_token_is_refused(client: AsyncClient, owner: Account, mangle: Any) -> None:
    created = await create_api_token(client, owner, "owner")
    assert_error(await me(client, mangle(created["token"], owner.tenant_id)), 401, "invalid_token")


# ------------------------------------------------------------------------------------- audit


async def test_token_lifecycle_is_audited(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "operator")
    response = await client.delete(f"/api/v1/tokens/{created['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text
    events = [e for e in await token_events(client, owner) if e["target_id"] == created["id"]]
    assert [e["action"] for e in events] == ["token.revoked", "token.created"]
    made = events[1]
    for event in events:
        assert event["target_type"] == "api_token"
        assert (event["actor_type"], event["actor_id"]) == ("user", str(owner.user_id))
        assert event["outcome"] == "success"
    assert made["details"] == {"name": created["name"], "role": "operator"}
    for event in events:
        assert created["token"] not in str(event)


async def test_refused_token_creation_is_not_audited(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    response = await client.post(
        "/api/v1/tokens", json={"name": "escalate", "role": "owner"}, headers=admin.headers
    )
    assert_error(response, 403, "forbidden")
    assert await token_events(client, owner) == []

"""/api/v1/me and /api/v1/members: authentication, roles, tenant isolation, audit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    bearer,
    create_api_token,
    create_member,
    login,
    unique_email,
)


async def members_of(client: AsyncClient, account: Account) -> dict[str, dict[str, Any]]:
    """The members of ``account``'s tenant, keyed by email."""
    response = await client.get("/api/v1/members", headers=account.headers)
    assert response.status_code == 200, response.text
    return {m["email"]: m for m in response.json()}


async def member_events(client: AsyncClient, owner: Account) -> list[dict[str, Any]]:
    """The tenant's member.* audit events, newest first."""
    response = await client.get(
        "/api/v1/audit", params={"action": "member", "limit": 200}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


# --------------------------------------------------------------------------------------- /me


async def test_me_as_owner_with_a_session(client: AsyncClient, owner: Account) -> None:
    response = await client.get("/api/v1/me", headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == {"id": str(owner.user_id), "email": owner.email}
    assert body["tenant"]["id"] == str(owner.tenant_id)
    assert body["tenant"]["slug"] == owner.tenant_slug
    assert body["tenant"]["name"] == f"Org {owner.email}"
    assert body["tenant"]["plan"] == "free"
    assert body["tenant"]["status"] == "active"
    assert body["role"] == "owner"
    assert body["auth"] == "session"


@pytest.mark.parametrize("role", ["admin", "editor", "operator", "viewer"])
async def test_me_reports_the_member_role(client: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(client, owner, role)
    body = (await client.get("/api/v1/me", headers=member.headers)).json()
    assert body["role"] == role
    assert body["user"] == {"id": str(member.user_id), "email": member.email}
    assert body["tenant"]["id"] == str(owner.tenant_id)
    assert body["auth"] == "session"


async def test_me_with_an_api_token(client: AsyncClient, owner: Account) -> None:
    created = await create_api_token(client, owner, "operator")
    response = await client.get("/api/v1/me", headers=bearer(created["token"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["auth"] == "api_token"
    assert body["role"] == "operator"
    assert body["user"]["id"] == str(owner.user_id)
    assert body["tenant"]["id"] == str(owner.tenant_id)


async def test_me_anonymous(client: AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert_error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Bearer bat_nothex_" + "x" * 40,
        "Bearer bat_" + "0" * 32 + "_" + "x" * 43,
        "Bearer brt_" + "0" * 32 + "_" + "x" * 43,
    ],
)
async def test_me_with_a_bad_credential(client: AsyncClient, header: str) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": header})
    assert_error(response, 401, "invalid_token")


async def test_me_with_a_non_bearer_scheme(client: AsyncClient, owner: Account) -> None:
    response = await client.get(
        "/api/v1/me", headers={"Authorization": f"Basic {owner.access_token}"}
    )
    assert_error(response, 401, "unauthenticated")


async def test_me_of_two_tenants_are_separate(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    mine = (await client.get("/api/v1/me", headers=owner.headers)).json()
    theirs = (await client.get("/api/v1/me", headers=stranger.headers)).json()
    assert mine["tenant"]["id"] != theirs["tenant"]["id"]
    assert theirs["tenant"]["id"] == str(stranger.tenant_id)


# ------------------------------------------------------------------------------- GET members


async def test_list_members_anonymous(client: AsyncClient) -> None:
    assert_error(await client.get("/api/v1/members"), 401, "unauthenticated")


@pytest.mark.parametrize("role", ["viewer", "operator", "editor", "admin"])
async def test_every_role_can_list_members(client: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(client, owner, role)
    response = await client.get("/api/v1/members", headers=member.headers)
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [(m["email"], m["role"]) for m in rows] == [
        (owner.email, "owner"),
        (member.email, role),
    ]
    assert rows[0]["user_id"] == str(owner.user_id)
    assert rows[1]["user_id"] == str(member.user_id)
    assert set(rows[0]) == {"user_id", "email", "role", "created_at"}


async def test_list_members_shows_only_the_callers_tenant(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    await create_member(client, owner, "editor")
    theirs = await members_of(client, stranger)
    assert list(theirs) == [stranger.email]
    mine = await members_of(client, owner)
    assert stranger.email not in mine


async def test_list_members_with_an_api_token(client: AsyncClient, owner: Account) -> None:
    token = (await create_api_token(client, owner, "viewer"))["token"]
    response = await client.get("/api/v1/members", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert [m["email"] for m in response.json()] == [owner.email]


# ------------------------------------------------------------------------------ POST members


async def test_admin_adds_an_editor(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    email = unique_email("editor")
    response = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "editor", "password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == email
    assert body["role"] == "editor"
    uuid.UUID(body["user_id"])
    assert (await members_of(client, owner))[email]["role"] == "editor"
    # The new account can log in to the tenant with the initial password.
    tokens = await login(client, email, DEFAULT_PASSWORD)
    me = (await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))).json()
    assert me["role"] == "editor"
    assert me["tenant"]["id"] == str(owner.tenant_id)


async def test_admin_can_grant_admin(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    response = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "admin", "password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    granted = response.json()
    assert granted["role"] == "admin"
    assert (await members_of(client, owner))[granted["email"]]["role"] == "admin"


async def test_owner_can_grant_owner(client: AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "owner", "password": DEFAULT_PASSWORD},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "owner"


async def test_admin_cannot_grant_owner(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    email = unique_email()
    response = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "owner", "password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert_error(response, 403, "forbidden")
    assert email not in await members_of(client, owner)
    # Nothing was half-created: the account does not exist either.
    again = await client.post(
        "/api/v1/members", json={"email": email, "role": "viewer"}, headers=owner.headers
    )
    assert_error(again, 422, "validation_failed")


async def test_new_email_without_password(client: AsyncClient, owner: Account) -> None:
    email = unique_email()
    response = await client.post(
        "/api/v1/members", json={"email": email, "role": "viewer"}, headers=owner.headers
    )
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["body", "password"]
    assert email not in await members_of(client, owner)


async def test_new_email_with_a_too_short_password(client: AsyncClient, owner: Account) -> None:
    email = unique_email()
    response = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "viewer", "password": "short"},
        headers=owner.headers,
    )
    assert_error(response, 422, "validation_failed")
    assert email not in await members_of(client, owner)


async def test_existing_account_with_password(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    response = await client.post(
        "/api/v1/members",
        json={"email": stranger.email, "role": "viewer", "password": "an attempt to reset it"},
        headers=owner.headers,
    )
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["body", "password"]
    assert stranger.email not in await members_of(client, owner)
    # The account's password is unchanged.
    await login(client, stranger.email, stranger.password, stranger.tenant_slug)


async def test_existing_account_without_password_is_added(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    response = await client.post(
        "/api/v1/members",
        json={"email": stranger.email, "role": "operator"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == str(stranger.user_id)
    assert (await members_of(client, owner))[stranger.email]["role"] == "operator"
    # The account now logs in to either tenant with its own password.
    here = await login(client, stranger.email, stranger.password, owner.tenant_slug)
    me = (await client.get("/api/v1/me", headers=bearer(here["access_token"]))).json()
    assert (me["tenant"]["id"], me["role"]) == (str(owner.tenant_id), "operator")
    # Its role in its own tenant is untouched, and that tenant does not see ours.
    assert (await members_of(client, stranger))[stranger.email]["role"] == "owner"
    assert owner.email not in await members_of(client, stranger)


async def test_existing_account_is_found_whatever_the_case(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    response = await client.post(
        "/api/v1/members",
        json={"email": stranger.email.upper(), "role": "viewer"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == str(stranger.user_id)


async def test_duplicate_member(client: AsyncClient, owner: Account) -> None:
    member = await create_member(client, owner, "viewer")
    response = await client.post(
        "/api/v1/members", json={"email": member.email, "role": "editor"}, headers=owner.headers
    )
    assert_error(response, 409, "conflict")
    assert (await members_of(client, owner))[member.email]["role"] == "viewer"


async def test_adding_the_caller_again_is_a_conflict(client: AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/api/v1/members", json={"email": owner.email, "role": "viewer"}, headers=owner.headers
    )
    assert_error(response, 409, "conflict")


@pytest.mark.parametrize("role", ["editor", "operator", "viewer"])
async def test_below_admin_cannot_add(client: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(client, owner, role)
    email = unique_email()
    response = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "viewer", "password": DEFAULT_PASSWORD},
        headers=member.headers,
    )
    assert_error(response, 403, "forbidden")
    assert email not in await members_of(client, owner)


async def test_add_member_anonymous(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "viewer", "password": DEFAULT_PASSWORD},
    )
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    "payload",
    [
        {"role": "superuser"},
        {"role": "Owner"},
        {"role": ""},
        {"role": None},
        {"email": "not-an-email"},
        {"email": None},
        {"unexpected": "field"},
        {"is_superuser": True},
        {"password": "x" * 1025},
    ],
    ids=lambda p: ",".join(p),
)
async def test_add_member_invalid_body(
    client: AsyncClient, owner: Account, payload: dict[str, Any]
) -> None:
    body = {"email": unique_email(), "role": "viewer", "password": DEFAULT_PASSWORD, **payload}
    response = await client.post("/api/v1/members", json=body, headers=owner.headers)
    assert_error(response, 422, "validation_failed")
    assert len(await members_of(client, owner)) == 1


async def test_add_member_missing_fields(client: AsyncClient, owner: Account) -> None:
    response = await client.post("/api/v1/members", json={}, headers=owner.headers)
    error = assert_error(response, 422, "validation_failed")
    assert {tuple(d["loc"]) for d in error["details"]} == {("body", "email"), ("body", "role")}


async def test_admin_api_token_can_add_but_not_above_its_role(
    client: AsyncClient, owner: Account
) -> None:
    token = (await create_api_token(client, owner, "admin"))["token"]
    ok = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "admin", "password": DEFAULT_PASSWORD},
        headers=bearer(token),
    )
    assert ok.status_code == 201, ok.text
    # The token's creator is an owner, but the token itself is only an admin.
    denied = await client.post(
        "/api/v1/members",
        json={"email": unique_email(), "role": "owner", "password": DEFAULT_PASSWORD},
        headers=bearer(token),
    )
    assert_error(denied, 403, "forbidden")


# ----------------------------------------------------------------------------- PATCH members


async def test_change_role(client: AsyncClient, owner: Account) -> None:
    member = await create_member(client, owner, "editor")
    response = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "operator"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user_id"], body["email"], body["role"]) == (
        str(member.user_id),
        member.email,
        "operator",
    )
    assert (await members_of(client, owner))[member.email]["role"] == "operator"
    # The member's existing session carries the new role on its next request.
    me = (await client.get("/api/v1/me", headers=member.headers)).json()
    assert me["role"] == "operator"


async def test_promoted_member_gains_permissions_at_once(
    client: AsyncClient, owner: Account
) -> None:
    member = await create_member(client, owner, "viewer")
    assert_error(await client.get("/api/v1/tokens", headers=member.headers), 403, "forbidden")
    response = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert (await client.get("/api/v1/tokens", headers=member.headers)).status_code == 200


async def test_admin_can_change_an_editor(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    editor = await create_member(client, owner, "editor")
    response = await client.patch(
        f"/api/v1/members/{editor.user_id}", json={"role": "admin"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"


async def test_admin_cannot_change_an_owner(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    response = await client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert_error(response, 403, "forbidden")
    assert (await members_of(client, owner))[owner.email]["role"] == "owner"


async def test_admin_cannot_promote_to_owner(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    editor = await create_member(client, owner, "editor")
    for target in (editor, admin):
        response = await client.patch(
            f"/api/v1/members/{target.user_id}", json={"role": "owner"}, headers=admin.headers
        )
        assert_error(response, 403, "forbidden")
    members = await members_of(client, owner)
    assert (members[editor.email]["role"], members[admin.email]["role"]) == ("editor", "admin")


@pytest.mark.parametrize("role", ["editor", "operator", "viewer"])
async def test_below_admin_cannot_change_roles(
    client: AsyncClient, owner: Account, role: str
) -> None:
    member = await create_member(client, owner, role)
    viewer = await create_member(client, owner, "viewer")
    response = await client.patch(
        f"/api/v1/members/{viewer.user_id}", json={"role": "viewer"}, headers=member.headers
    )
    assert_error(response, 403, "forbidden")
    # Nor raise themselves.
    response = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "admin"}, headers=member.headers
    )
    assert_error(response, 403, "forbidden")
    assert (await members_of(client, owner))[member.email]["role"] == role


async def test_cannot_demote_the_last_owner(client: AsyncClient, owner: Account) -> None:
    response = await client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    assert_error(response, 409, "conflict")
    assert (await members_of(client, owner))[owner.email]["role"] == "owner"


async def test_can_demote_an_owner_when_there_are_two(client: AsyncClient, owner: Account) -> None:
    second = await create_member(client, owner, "owner")
    response = await client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"
    # Now the second owner is the last one.
    response = await client.patch(
        f"/api/v1/members/{second.user_id}", json={"role": "admin"}, headers=second.headers
    )
    assert_error(response, 409, "conflict")
    members = await members_of(client, owner)
    assert (members[owner.email]["role"], members[second.email]["role"]) == ("admin", "owner")


async def test_setting_the_same_role_on_the_last_owner_is_allowed(
    client: AsyncClient, owner: Account
) -> None:
    response = await client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "owner"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "owner"
    assert (await members_of(client, owner))[owner.email]["role"] == "owner"


async def test_change_role_of_unknown_user(client: AsyncClient, owner: Account) -> None:
    response = await client.patch(
        f"/api/v1/members/{uuid.uuid4()}", json={"role": "viewer"}, headers=owner.headers
    )
    assert_error(response, 404, "not_found")


async def test_change_role_of_another_tenants_member(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    their_member = await create_member(client, stranger, "editor")
    for target in (stranger, their_member):
        response = await client.patch(
            f"/api/v1/members/{target.user_id}", json={"role": "viewer"}, headers=owner.headers
        )
        assert_error(response, 404, "not_found")
        assert target.email not in response.text
    theirs = await members_of(client, stranger)
    assert (theirs[stranger.email]["role"], theirs[their_member.email]["role"]) == (
        "owner",
        "editor",
    )
    assert their_member.email not in await members_of(client, owner)


async def test_change_role_of_a_shared_account_touches_only_this_tenant(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    added = await client.post(
        "/api/v1/members", json={"email": stranger.email, "role": "editor"}, headers=owner.headers
    )
    assert added.status_code == 201, added.text
    response = await client.patch(
        f"/api/v1/members/{stranger.user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert (await members_of(client, stranger))[stranger.email]["role"] == "owner"


async def test_change_role_malformed_id(client: AsyncClient, owner: Account) -> None:
    response = await client.patch(
        "/api/v1/members/not-a-uuid", json={"role": "viewer"}, headers=owner.headers
    )
    assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize(
    "payload",
    [{}, {"role": "superuser"}, {"role": "viewer", "email": "x@example.com"}, {"role": 3}],
    ids=["empty", "bad-role", "unknown-field", "wrong-type"],
)
async def test_change_role_invalid_body(
    client: AsyncClient, owner: Account, payload: dict[str, Any]
) -> None:
    member = await create_member(client, owner, "editor")
    response = await client.patch(
        f"/api/v1/members/{member.user_id}", json=payload, headers=owner.headers
    )
    assert_error(response, 422, "validation_failed")
    assert (await members_of(client, owner))[member.email]["role"] == "editor"


async def test_change_role_anonymous(client: AsyncClient, owner: Account) -> None:
    response = await client.patch(f"/api/v1/members/{owner.user_id}", json={"role": "viewer"})
    assert_error(response, 401, "unauthenticated")


# ---------------------------------------------------------------------------- DELETE members


async def test_remove_member(client: AsyncClient, owner: Account) -> None:
    member = await create_member(client, owner, "editor")
    response = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert member.email not in await members_of(client, owner)


async def test_removed_member_loses_sessions_and_tokens(
    client: AsyncClient, owner: Account
) -> None:
    member = await create_member(client, owner, "admin")
    token = (await create_api_token(client, member, "viewer"))["token"]
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200

    response = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text

    assert_error(await client.get("/api/v1/me", headers=member.headers), 401, "invalid_token")
    assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "invalid_token")
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": member.refresh_token}
    )
    assert_error(refreshed, 401, "invalid_token")
    # The token is revoked, not merely orphaned: it shows so in the listing.
    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    theirs = [t for t in listed if t["created_by"] == str(member.user_id)]
    assert len(theirs) == 1
    assert theirs[0]["revoked_at"] is not None


async def test_re_added_member_does_not_regain_old_tokens(
    client: AsyncClient, owner: Account
) -> None:
    member = await create_member(client, owner, "admin")
    token = (await create_api_token(client, member, "viewer"))["token"]
    assert (
        await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
    ).status_code == 204
    again = await client.post(
        "/api/v1/members", json={"email": member.email, "role": "admin"}, headers=owner.headers
    )
    assert again.status_code == 201, again.text
    assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "invalid_token")


async def test_removed_member_of_two_tenants_keeps_the_other(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    added = await client.post(
        "/api/v1/members", json={"email": stranger.email, "role": "editor"}, headers=owner.headers
    )
    assert added.status_code == 201, added.text
    response = await client.delete(f"/api/v1/members/{stranger.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert (await client.get("/api/v1/me", headers=stranger.headers)).status_code == 200
    assert stranger.email in await members_of(client, stranger)


async def test_cannot_remove_the_last_owner(client: AsyncClient, owner: Account) -> None:
    response = await client.delete(f"/api/v1/members/{owner.user_id}", headers=owner.headers)
    assert_error(response, 409, "conflict")
    assert (await client.get("/api/v1/me", headers=owner.headers)).status_code == 200


async def test_owner_can_leave_when_there_is_another_owner(
    client: AsyncClient, owner: Account
) -> None:
    second = await create_member(client, owner, "owner")
    response = await client.delete(f"/api/v1/members/{owner.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert list(await members_of(client, second)) == [second.email]
    assert_error(await client.get("/api/v1/me", headers=owner.headers), 401, "invalid_token")


async def test_admin_cannot_remove_an_owner(client: AsyncClient, owner: Account) -> None:
    await create_member(client, owner, "owner")
    admin = await create_member(client, owner, "admin")
    response = await client.delete(f"/api/v1/members/{owner.user_id}", headers=admin.headers)
    assert_error(response, 403, "forbidden")
    assert owner.email in await members_of(client, owner)


@pytest.mark.parametrize("role", ["editor", "operator", "viewer"])
async def test_below_admin_cannot_remove(client: AsyncClient, owner: Account, role: str) -> None:
    member = await create_member(client, owner, role)
    viewer = await create_member(client, owner, "viewer")
    response = await client.delete(f"/api/v1/members/{viewer.user_id}", headers=member.headers)
    assert_error(response, 403, "forbidden")
    assert viewer.email in await members_of(client, owner)


async def test_remove_another_tenants_member(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    their_member = await create_member(client, stranger, "viewer")
    for target in (stranger, their_member):
        response = await client.delete(f"/api/v1/members/{target.user_id}", headers=owner.headers)
        assert_error(response, 404, "not_found")
        assert target.email not in response.text
    assert set(await members_of(client, stranger)) == {stranger.email, their_member.email}
    assert (await client.get("/api/v1/me", headers=their_member.headers)).status_code == 200


async def test_remove_unknown_member(client: AsyncClient, owner: Account) -> None:
    response = await client.delete(f"/api/v1/members/{uuid.uuid4()}", headers=owner.headers)
    assert_error(response, 404, "not_found")


async def test_remove_member_malformed_id(client: AsyncClient, owner: Account) -> None:
    response = await client.delete("/api/v1/members/12345", headers=owner.headers)
    assert_error(response, 422, "validation_failed")


async def test_remove_member_anonymous(client: AsyncClient, owner: Account) -> None:
    response = await client.delete(f"/api/v1/members/{owner.user_id}")
    assert_error(response, 401, "unauthenticated")


# ---------------------------------------------------------------------------------- audit


async def test_member_changes_are_audited(client: AsyncClient, owner: Account) -> None:
    email = unique_email()
    added = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "editor", "password": DEFAULT_PASSWORD},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    user_id = added.json()["user_id"]
    changed = await client.patch(
        f"/api/v1/members/{user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert changed.status_code == 200, changed.text
    removed = await client.delete(f"/api/v1/members/{user_id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text

    events = [e for e in await member_events(client, owner) if e["target_id"] == user_id]
    assert [e["action"] for e in events] == [
        "member.removed",
        "member.role_changed",
        "member.added",
    ]
    removed_event, changed_event, added_event = events
    for event in events:
        assert event["target_type"] == "user"
        assert event["actor_type"] == "user"
        assert event["actor_id"] == str(owner.user_id)
        assert event["actor_label"] == owner.email
        assert event["outcome"] == "success"
        assert event["ip"] == "203.0.113.7"
    assert added_event["details"] == {"role": "editor", "email": email}
    assert changed_event["details"] == {"from": "editor", "to": "viewer"}
    assert removed_event["details"] == {"role": "viewer"}


async def test_member_change_by_an_api_token_is_attributed_to_the_token(
    client: AsyncClient, owner: Account
) -> None:
    created = await create_api_token(client, owner, "admin")
    member = await create_member(client, owner, "viewer")
    response = await client.patch(
        f"/api/v1/members/{member.user_id}",
        json={"role": "editor"},
        headers=bearer(created["token"]),
    )
    assert response.status_code == 200, response.text
    event = (await member_events(client, owner))[0]
    assert (event["action"], event["target_id"]) == ("member.role_changed", str(member.user_id))
    assert (event["actor_type"], event["actor_id"]) == ("token", created["id"])


async def test_refused_member_changes_are_not_audited(client: AsyncClient, owner: Account) -> None:
    admin = await create_member(client, owner, "admin")
    before = await member_events(client, owner)
    attempts: list[tuple[str, str, dict[str, Any] | None, Account, int, str]] = [
        (
            "POST",
            "/api/v1/members",
            {"email": unique_email(), "role": "owner", "password": DEFAULT_PASSWORD},
            admin,
            403,
            "forbidden",
        ),
        ("PATCH", f"/api/v1/members/{owner.user_id}", {"role": "admin"}, owner, 409, "conflict"),
        ("DELETE", f"/api/v1/members/{owner.user_id}", None, owner, 409, "conflict"),
        ("DELETE", f"/api/v1/members/{owner.user_id}", None, admin, 403, "forbidden"),
        (
            "POST",
            "/api/v1/members",
            {"email": admin.email, "role": "viewer"},
            owner,
            409,
            "conflict",
        ),
    ]
    for method, url, payload, caller, status, code in attempts:
        response = await client.request(method, url, json=payload, headers=caller.headers)
        assert_error(response, status, code)
    assert await member_events(client, owner) == before


async def test_member_events_stay_in_their_tenant(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    member = await create_member(client, owner, "viewer")
    theirs = await member_events(client, stranger)
    assert all(e["target_id"] != str(member.user_id) for e in theirs)
    assert [e["target_id"] for e in theirs] == [str(stranger.user_id)]


# ----------------------------------------------------------------------------- concurrency


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    client: AsyncClient, owner: Account
) -> None:
    second = await create_member(client, owner, "owner")
    responses = await asyncio.gather(
        client.patch(
            f"/api/v1/members/{second.user_id}", json={"role": "admin"}, headers=owner.headers
        ),
        client.patch(
            f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=second.headers
        ),
    )
    # 409 if both saw two owners; 403 if the second was already demoted when it called.
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
    roles = [m["role"] for m in (await members_of(client, owner)).values()]
    assert roles.count("owner") == 1


async def test_two_owners_removing_each_other_at_once_leave_one_owner(
    client: AsyncClient, owner: Account
) -> None:
    second = await create_member(client, owner, "owner")
    responses = await asyncio.gather(
        client.delete(f"/api/v1/members/{second.user_id}", headers=owner.headers),
        client.delete(f"/api/v1/members/{owner.user_id}", headers=second.headers),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([204, 401], [204, 409]), [r.text for r in responses]
    survivors = [
        a
        for a in (owner, second)
        if (await client.get("/api/v1/me", headers=a.headers)).status_code == 200
    ]
    assert len(survivors) == 1
    assert [m["role"] for m in (await members_of(client, survivors[0])).values()] == ["owner"]


async def test_adding_the_same_new_email_twice_at_once(client: AsyncClient, owner: Account) -> None:
    email = unique_email()
    body = {"email": email, "role": "viewer", "password": DEFAULT_PASSWORD}
    responses = await asyncio.gather(
        *(client.post("/api/v1/members", json=body, headers=owner.headers) for _ in range(2))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 201, [r.text for r in responses]
    assert statuses[1] in (409, 422), [r.text for r in responses]
    assert email in await members_of(client, owner)


async def test_adding_the_same_existing_account_twice_at_once(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    body = {"email": stranger.email, "role": "viewer"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/members", json=body, headers=owner.headers) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert_error(next(r for r in responses if r.status_code == 409), 409, "conflict")
    assert (await members_of(client, owner))[stranger.email]["role"] == "viewer"

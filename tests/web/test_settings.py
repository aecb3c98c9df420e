"""Settings pages: members and roles (/settings/members), API tokens (/settings/tokens)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    bearer,
    create_api_token,
    create_member,
    unique_email,
)
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

MEMBERS = "/settings/members"
TOKENS = "/settings/tokens"
SECRET = re.compile(r'data-testid="token-secret">([^<]+)<')


async def members_of(client: AsyncClient, account: Account) -> dict[str, str]:
    """email -> role, as the API lists them."""
    response = await client.get("/api/v1/members", headers=account.headers)
    assert response.status_code == 200, response.text
    return {m["email"]: m["role"] for m in response.json()}


async def tokens_of(client: AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/tokens", headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


# ---------------------------------------------------------------------------- members


async def test_members_page_needs_a_session(anonymous: Browser, owner: Account) -> None:
    assert_login_redirect(await anonymous.get(MEMBERS))
    for path in (MEMBERS, f"{MEMBERS}/{owner.user_id}/role", f"{MEMBERS}/{owner.user_id}/remove"):
        assert_login_redirect(await anonymous.post(path, {"role": "viewer"}))


async def test_owner_sees_members_with_every_role_to_grant(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    editor = await create_member(client, owner, "editor")
    html = assert_page(await owner_browser.get(MEMBERS))
    assert 'data-testid="members-table"' in html
    assert f'data-email="{owner.email}"' in html and f'data-email="{editor.email}"' in html
    assert 'data-testid="add-member-form"' in html
    assert html.count('data-testid="member-remove"') == 2
    for role in ("owner", "admin", "editor", "operator", "viewer"):
        assert f'<option value="{role}"' in html


async def test_viewer_sees_the_list_without_buttons_and_is_refused(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    viewer = await create_member(client, owner, "viewer")
    editor = await create_member(client, owner, "editor")
    browser = await create_browser(viewer)
    html = assert_page(await browser.get(MEMBERS))
    assert f'data-email="{editor.email}"' in html
    for hook in ("add-member-form", "member-remove", "member-change-role", "member-role-select"):
        assert f'data-testid="{hook}"' not in html
    before = await members_of(client, owner)
    new_email = unique_email("refused")
    refused = [
        await browser.post(MEMBERS, {"email": new_email, "role": "viewer", "password": "x" * 12}),
        await browser.post(f"{MEMBERS}/{editor.user_id}/role", {"role": "viewer"}),
        await browser.post(f"{MEMBERS}/{editor.user_id}/remove"),
    ]
    for response in refused:
        assert assert_page(response, 403)
        assert "forbidden" in response.text
    assert await members_of(client, owner) == before


async def test_admin_may_grant_only_roles_up_to_its_own(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    admin = await create_member(client, owner, "admin")
    browser = await create_browser(admin)
    html = assert_page(await browser.get(MEMBERS))
    assert '<option value="owner"' not in html
    assert '<option value="admin"' in html
    owner_row = html.split(f'data-email="{owner.email}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-testid="member-remove"' not in owner_row
    assert "above your role" in owner_row
    email = unique_email("promoted")
    response = await browser.post(
        MEMBERS, {"email": email, "role": "owner", "password": DEFAULT_PASSWORD}
    )
    assert "cannot grant the role owner" in assert_page(response, 403)
    assert email not in await members_of(client, owner)
    # Neither can it touch the owner.
    demote = await browser.post(f"{MEMBERS}/{owner.user_id}/role", {"role": "viewer"})
    assert_page(demote, 403)
    assert_page(await browser.post(f"{MEMBERS}/{owner.user_id}/remove"), 403)
    assert (await members_of(client, owner))[owner.email] == "owner"


async def test_add_a_new_account_as_member(
    client: AsyncClient, owner: Account, owner_browser: Browser, create_browser: BrowserFactory
) -> None:
    email = unique_email("added")
    response = await owner_browser.post(
        MEMBERS, {"email": email, "role": "operator", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{MEMBERS}?notice=member-added"
    assert (await members_of(client, owner))[email] == "operator"
    page = assert_page(await owner_browser.get(response.headers["location"]))
    assert "Member added." in page and f'data-email="{email}"' in page
    # The new account logs in to the dashboard with the initial password.
    member = Account(email, DEFAULT_PASSWORD, uuid.uuid4(), owner.tenant_id, owner.tenant_slug,
                     "operator", "", "")  # fmt: skip
    browser = await create_browser(member)
    assert f'data-testid="who">{email}<' in assert_page(await browser.get(MEMBERS))


async def test_add_an_existing_account_without_a_password(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    response = await owner_browser.post(MEMBERS, {"email": stranger.email, "role": "viewer"})
    assert response.status_code == 303, response.text
    assert (await members_of(client, owner))[stranger.email] == "viewer"
    again = await owner_browser.post(MEMBERS, {"email": stranger.email, "role": "viewer"})
    assert "Already a member" in assert_page(again, 409)


@pytest.mark.parametrize(
    ("form", "field", "text"),
    [
        ({"email": "not-an-email", "role": "viewer"}, "email", "email"),
        ({"email": "NEW", "role": "boss"}, "role", "Input should be"),
        ({"email": "NEW", "role": "viewer"}, "password", "required for a new account"),
        ({"email": "NEW", "role": "viewer", "password": "short"}, None, "at least"),
    ],
    ids=["bad-email", "bad-role", "new-account-without-password", "weak-password"],
)
async def test_add_member_errors_render_inline_and_change_nothing(
    client: AsyncClient,
    owner: Account,
    owner_browser: Browser,
    form: dict[str, str],
    field: str | None,
    text: str,
) -> None:
    if form["email"] == "NEW":
        form = {**form, "email": unique_email("invalid")}
    before = await members_of(client, owner)
    response = await owner_browser.post(MEMBERS, form)
    html = assert_page(response, 422)
    assert text in html
    if field is not None:
        assert 'class="field invalid"' in html and f'name="{field}"' in html
    assert f'value="{form["email"]}"' in html  # what was typed is kept
    assert await members_of(client, owner) == before


async def test_change_a_members_role(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    member = await create_member(client, owner, "viewer")
    response = await owner_browser.post(f"{MEMBERS}/{member.user_id}/role", {"role": "editor"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{MEMBERS}?notice=role-changed"
    assert (await members_of(client, owner))[member.email] == "editor"
    # The member's next request already has the new role.
    me = await client.get("/api/v1/me", headers=member.headers)
    assert me.json()["role"] == "editor"


async def test_change_role_refusals(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    theirs = await create_member(client, stranger, "viewer")
    for user_id in (theirs.user_id, uuid.uuid4()):
        response = await owner_browser.post(f"{MEMBERS}/{user_id}/role", {"role": "admin"})
        assert "Member not found" in assert_page(response, 404)
        assert theirs.email not in response.text
    assert (await members_of(client, stranger))[theirs.email] == "viewer"
    bad_role = await owner_browser.post(f"{MEMBERS}/{theirs.user_id}/role", {"role": "boss"})
    assert_page(bad_role, 422)
    bad_id = await owner_browser.post(f"{MEMBERS}/not-a-uuid/role", {"role": "viewer"})
    assert_page(bad_id, 422)
    last_owner = await owner_browser.post(f"{MEMBERS}/{owner.user_id}/role", {"role": "admin"})
    assert "at least one owner" in assert_page(last_owner, 409)
    assert (await members_of(client, owner))[owner.email] == "owner"


async def test_remove_a_member_ends_their_sessions(
    client: AsyncClient, owner: Account, owner_browser: Browser, create_browser: BrowserFactory
) -> None:
    member = await create_member(client, owner, "editor")
    member_browser = await create_browser(member)
    assert_page(await member_browser.get(MEMBERS))
    response = await owner_browser.post(f"{MEMBERS}/{member.user_id}/remove")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{MEMBERS}?notice=member-removed"
    assert member.email not in await members_of(client, owner)
    assert_login_redirect(await member_browser.get(MEMBERS))
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 401


async def test_remove_refusals(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    theirs = await create_member(client, stranger, "viewer")
    for user_id in (theirs.user_id, uuid.uuid4()):
        assert_page(await owner_browser.post(f"{MEMBERS}/{user_id}/remove"), 404)
    assert theirs.email in await members_of(client, stranger)
    last_owner = await owner_browser.post(f"{MEMBERS}/{owner.user_id}/remove")
    assert "at least one owner" in assert_page(last_owner, 409)


async def test_remove_over_htmx_redirects_the_whole_page(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    member = await create_member(client, owner, "viewer")
    await owner_browser.get(MEMBERS)
    response = await owner_browser.htmx("POST", f"{MEMBERS}/{member.user_id}/remove")
    assert response.status_code == 200, response.text
    assert response.headers["HX-Redirect"] == f"{MEMBERS}?notice=member-removed"
    assert member.email not in await members_of(client, owner)


async def test_member_forms_without_csrf_are_refused(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    member = await create_member(client, owner, "viewer")
    before = await members_of(client, owner)
    posts = [
        (MEMBERS, {"email": unique_email(), "role": "viewer", "password": DEFAULT_PASSWORD}),
        (f"{MEMBERS}/{member.user_id}/role", {"role": "admin"}),
        (f"{MEMBERS}/{member.user_id}/remove", {}),
    ]
    for path, form in posts:
        response = await owner_browser.http.post(path, data=form)
        assert "csrf_failed" in assert_page(response, 403)
        forged = await owner_browser.http.post(path, data={**form, "csrf_token": "y" * 43})
        assert_page(forged, 403)
    assert await members_of(client, owner) == before


# ----------------------------------------------------------------------------- tokens


async def test_tokens_page_needs_a_session_and_an_admin(
    client: AsyncClient, owner: Account, anonymous: Browser, create_browser: BrowserFactory
) -> None:
    token = await create_api_token(client, owner, "viewer")
    assert_login_redirect(await anonymous.get(TOKENS))
    assert_login_redirect(await anonymous.post(TOKENS, {"name": "x", "role": "viewer"}))
    assert_login_redirect(await anonymous.post(f"{TOKENS}/{token['id']}/revoke"))
    for role in ("viewer", "editor", "operator"):
        browser = await create_browser(await create_member(client, owner, role))
        assert "forbidden" in assert_page(await browser.get(TOKENS), 403)
        assert_page(await browser.post(TOKENS, {"name": "x", "role": "viewer"}), 403)
        assert_page(await browser.post(f"{TOKENS}/{token['id']}/revoke"), 403)
    tokens = await tokens_of(client, owner)
    assert [t["name"] for t in tokens] == ["ci-viewer"]
    assert tokens[0]["revoked_at"] is None


async def test_tokens_page_lists_without_secrets(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    empty = assert_page(await owner_browser.get(TOKENS))
    assert 'data-testid="tokens-empty"' in empty
    created = await create_api_token(client, owner, "editor", expires_in_days=30)
    html = assert_page(await owner_browser.get(TOKENS))
    assert 'data-testid="tokens-table"' in html
    row = html.split(f'data-token-id="{created["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert created["prefix"] in row and "editor" in row and owner.email in row
    assert 'data-testid="token-revoke"' in row and "never" in row  # never used
    assert created["token"] not in html
    assert 'data-testid="create-token-form"' in html


async def test_create_token_shows_the_secret_once_and_it_works(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    response = await owner_browser.post(
        TOKENS, {"name": "deploy", "role": "operator", "expires_in_days": "7"}
    )
    html = assert_page(response, 201)
    assert response.headers["cache-control"] == "no-store"
    match = SECRET.search(html)
    assert match, html
    secret = match.group(1)
    assert secret.startswith("bat_")
    # Nowhere but the page body: no cookie, no redirect.
    assert all(secret not in c for c in response.headers.get_list("set-cookie"))
    assert "location" not in response.headers
    me = await client.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["auth"]) == ("operator", "api_token")
    (token,) = await tokens_of(client, owner)
    assert (token["name"], token["role"]) == ("deploy", "operator")
    assert token["expires_at"] is not None
    reload = assert_page(await owner_browser.get(TOKENS))
    assert secret not in reload and 'data-testid="token-secret"' not in reload
    assert token["prefix"] in reload


async def test_admin_may_not_create_an_owner_token(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    browser = await create_browser(await create_member(client, owner, "admin"))
    html = assert_page(await browser.get(TOKENS))
    assert '<option value="owner"' not in html
    response = await browser.post(TOKENS, {"name": "too-high", "role": "owner"})
    assert "cannot create a token with role owner" in assert_page(response, 403)
    assert 'data-testid="token-secret"' not in response.text
    assert await tokens_of(client, owner) == []


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": "", "role": "viewer"}, "name"),
        ({"name": "x" * 101, "role": "viewer"}, "name"),
        ({"name": "ok", "role": "boss"}, "role"),
        ({"name": "ok", "role": "viewer", "expires_in_days": "0"}, "expires_in_days"),
        ({"name": "ok", "role": "viewer", "expires_in_days": "3651"}, "expires_in_days"),
        ({"name": "ok", "role": "viewer", "expires_in_days": "soon"}, "expires_in_days"),
    ],
    ids=["empty-name", "long-name", "bad-role", "zero-days", "too-many-days", "days-text"],
)
async def test_create_token_errors_render_inline_and_change_nothing(
    client: AsyncClient,
    owner: Account,
    owner_browser: Browser,
    form: dict[str, str],
    field: str,
) -> None:
    response = await owner_browser.post(TOKENS, form)
    html = assert_page(response, 422)
    assert "field-error" in html
    assert f'name="{field}"' in html.split('class="field invalid"', 1)[1].split("</label>", 1)[0]
    assert 'data-testid="token-secret"' not in html
    assert await tokens_of(client, owner) == []


async def test_revoke_a_token(client: AsyncClient, owner: Account, owner_browser: Browser) -> None:
    token = await create_api_token(client, owner, "viewer")
    assert (await client.get("/api/v1/me", headers=bearer(token["token"]))).status_code == 200
    response = await owner_browser.post(f"{TOKENS}/{token['id']}/revoke")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{TOKENS}?notice=token-revoked"
    refused = await client.get("/api/v1/me", headers=bearer(token["token"]))
    assert refused.status_code == 401
    html = assert_page(await owner_browser.get(response.headers["location"]))
    row = html.split(f'data-token-id="{token["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="revoked"' in html and 'data-testid="token-revoke"' not in row
    # Revoking again changes nothing and is not an error.
    again = await owner_browser.post(f"{TOKENS}/{token['id']}/revoke")
    assert again.status_code == 303


async def test_revoke_refusals(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    theirs = await create_api_token(client, stranger, "viewer")
    for token_id in (theirs["id"], str(uuid.uuid4())):
        response = await owner_browser.post(f"{TOKENS}/{token_id}/revoke")
        assert "API token not found" in assert_page(response, 404)
    assert_page(await owner_browser.post(f"{TOKENS}/not-a-uuid/revoke"), 422)
    assert (await client.get("/api/v1/me", headers=bearer(theirs["token"]))).status_code == 200


async def test_token_forms_without_csrf_are_refused(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    token = await create_api_token(client, owner, "viewer")
    await owner_browser.get(TOKENS)
    create = await owner_browser.http.post(TOKENS, data={"name": "nope", "role": "viewer"})
    assert "csrf_failed" in assert_page(create, 403)
    revoke = await owner_browser.http.post(f"{TOKENS}/{token['id']}/revoke")
    assert_page(revoke, 403)
    tokens = await tokens_of(client, owner)
    assert [(t["name"], t["revoked_at"]) for t in tokens] == [("ci-viewer", None)]

"""Invitations from the members page: invite by email, the pending list, withdraw - the
accounts service the API's /api/v1/invitations routes call."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member, unique_email
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

MEMBERS = "/settings/members"
INVITE = "/settings/invitations"


async def _pending(client: AsyncClient, owner: Account) -> dict[str, dict]:
    response = await client.get("/api/v1/invitations", headers=owner.headers)
    assert response.status_code == 200, response.text
    return {i["email"]: i for i in response.json()}


async def _invite_via_api(client: AsyncClient, owner: Account, email: str) -> str:
    response = await client.post(
        "/api/v1/invitations", json={"email": email, "role": "viewer"}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_invitations_need_a_session(anonymous: Browser) -> None:
    assert_login_redirect(
        await anonymous.post(INVITE, {"email": "a@example.com", "role": "viewer"})
    )
    assert_login_redirect(await anonymous.post(f"{INVITE}/{uuid.uuid4()}/revoke"))


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_members_below_admin_see_pending_invitations_but_may_not_invite(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory, role: str
) -> None:
    invitation = await _invite_via_api(client, owner, unique_email("pending"))
    browser = await create_browser(await create_member(client, owner, role))
    html = assert_page(await browser.get(MEMBERS))
    assert 'data-testid="invitation-row"' in html
    assert 'data-testid="invite-form"' not in html
    assert 'data-testid="invitation-revoke"' not in html
    refused = await browser.post(INVITE, {"email": unique_email("x"), "role": "viewer"})
    assert refused.status_code == 403
    assert (await browser.post(f"{INVITE}/{invitation}/revoke")).status_code == 403
    assert len(await _pending(client, owner)) == 1


async def test_an_owner_invites_and_withdraws(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    email = unique_email("invitee")
    sent = await owner_browser.post(INVITE, {"email": email, "role": "editor"})
    assert sent.status_code == 303
    html = assert_page(await owner_browser.get(sent.headers["location"]))
    assert "Invitation sent" in html
    assert f'data-testid="invitation-row" data-email="{email}"' in html
    pending = await _pending(client, owner)
    assert pending[email]["role"] == "editor"
    withdrawn = await owner_browser.post(f"{INVITE}/{pending[email]['id']}/revoke")
    assert withdrawn.status_code == 303
    assert await _pending(client, owner) == {}
    assert "Invitation withdrawn" in assert_page(
        await owner_browser.get(withdrawn.headers["location"])
    )


async def test_an_admin_may_not_invite_an_owner(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    admin = await create_browser(await create_member(client, owner, "admin"))
    assert 'value="owner"' not in assert_page(await admin.get(MEMBERS)).split("invite-form")[1]
    refused = await admin.post(INVITE, {"email": unique_email("x"), "role": "owner"})
    assert refused.status_code == 403
    assert await _pending(client, owner) == {}


@pytest.mark.parametrize(
    ("email", "role"),
    [
        ("not an address", "viewer"),
        ("", "viewer"),
        ("ok@example.com", "god"),
        ("ok@example.com", ""),
    ],
)
async def test_bad_invitations_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser, email: str, role: str
) -> None:
    response = await owner_browser.post(INVITE, {"email": email, "role": role})
    html = assert_page(response, 422)
    assert "field-error" in html.split('data-testid="invite-form"')[1].split("</form>")[0]
    assert await _pending(client, owner) == {}


async def test_inviting_a_member_is_a_conflict(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    member = await create_member(client, owner, "viewer")
    refused = await owner_browser.post(INVITE, {"email": member.email, "role": "viewer"})
    assert "Already a member" in assert_page(refused, 409)
    assert await _pending(client, owner) == {}


async def test_withdraw_another_tenants_or_a_missing_invitation(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    theirs = await _invite_via_api(client, stranger, unique_email("theirs"))
    assert_page(await owner_browser.post(f"{INVITE}/{theirs}/revoke"), 404)
    assert len(await _pending(client, stranger)) == 1
    assert_page(await owner_browser.post(f"{INVITE}/{uuid.uuid4()}/revoke"), 404)
    assert (await owner_browser.post(f"{INVITE}/not-a-uuid/revoke")).status_code == 422


async def test_invitation_forms_need_the_csrf_token(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    forged = await owner_browser.http.post(
        INVITE, data={"email": unique_email("x"), "role": "viewer"}
    )
    assert forged.status_code == 403
    assert await _pending(client, owner) == {}

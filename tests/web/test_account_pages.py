"""The account lifecycle's pages - verify an email, forgot/reset password, accept an
invitation - on an API that mails through a real SMTP server in the test process
(aiosmtpd, ``tests/fixtures/mail.py``) and requires verified addresses. The links are
followed as mailed."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.accounts.smtp import Inbox, link_in, mail_to, token_in
from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    create_tenant,
    unique_email,
)
from tests.runs.factories import create_job, python_task
from tests.web.helpers import BrowserFactory, assert_page

NEW_PASSWORD = "a brand new passphrase 42"
BAD_TOKEN = "x" * 43


async def _login_status(hosted: AsyncClient, email: str, password: str) -> int:
    response = await hosted.post("/api/v1/auth/login", json={"email": email, "password": password})
    return response.status_code


async def _can_run(hosted: AsyncClient, account: Account) -> bool:
    job = await create_job(hosted, account, [python_task("a")])
    response = await hosted.post(
        f"/api/v1/jobs/{job['id']}/runs", json={"delay_seconds": 3600}, headers=account.headers
    )
    return response.status_code == 201


async def _invite(hosted: AsyncClient, owner: Account, email: str, role: str = "editor") -> str:
    response = await hosted.post(
        "/api/v1/invitations", json={"email": email, "role": role}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# ------------------------------------------------------------------------------ verification


async def test_verify_email_from_the_mailed_link(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    link = link_in(await mail_to(inbox, owner.email))
    assert link.startswith("/verify-email?token=")
    browser = await create_hosted_browser()
    html = assert_page(await browser.get(link))  # opening the link uses nothing up
    assert 'data-testid="verify-form"' in html
    assert not await _can_run(hosted, owner)
    done = await browser.post(
        "/verify-email", {"token": token_in(await mail_to(inbox, owner.email))}
    )
    assert 'data-testid="account-done"' in assert_page(done)
    assert await _can_run(hosted, owner)
    # Single use: the link and the form refuse it now.
    assert (await browser.get(link)).status_code == 400
    again = await browser.post(
        "/verify-email", {"token": token_in(await mail_to(inbox, owner.email))}
    )
    assert "This link is not valid" in assert_page(again, 400)


@pytest.mark.parametrize("query", ["", "?token=", "?token=short", f"?token={BAD_TOKEN}"])
async def test_verify_email_bad_links(create_hosted_browser: BrowserFactory, query: str) -> None:
    browser = await create_hosted_browser()
    assert_page(await browser.get(f"/verify-email{query}"), 400)


async def test_verify_email_needs_the_csrf_token(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    token = token_in(await mail_to(inbox, owner.email))
    browser = await create_hosted_browser()
    forged = await browser.http.post("/verify-email", data={"token": token})
    assert forged.status_code == 403
    assert not await _can_run(hosted, owner)
    bad = await browser.post("/verify-email", {"token": "short"})
    assert bad.status_code == 422
    assert not await _can_run(hosted, owner)


async def test_resend_verification_needs_a_session_and_an_unverified_address(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    anonymous = await create_hosted_browser()
    assert (await anonymous.post("/verify-email/resend")).status_code == 303  # to /login
    owner = await create_tenant(hosted)
    browser = await create_hosted_browser(owner)
    assert 'data-testid="resend-form"' in assert_page(await browser.get("/verify-email/resend"))
    assert_page(await browser.post("/verify-email/resend"))
    second = await mail_to(inbox, owner.email, count=2)
    await browser.post("/verify-email", {"token": token_in(second)})
    assert await _can_run(hosted, owner)
    assert_page(await browser.post("/verify-email/resend"), 409)


# ------------------------------------------------------------------------------ password reset


async def test_reset_a_password_from_the_pages(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    browser = await create_hosted_browser()
    assert 'href="/forgot-password"' in assert_page(await browser.get("/login"))
    assert 'data-testid="forgot-form"' in assert_page(await browser.get("/forgot-password"))
    asked = await browser.post("/forgot-password", {"email": owner.email.upper()})
    assert "If an account uses this address" in assert_page(asked)
    message = await mail_to(inbox, owner.email, count=2)  # after the verification mail
    link = link_in(message)
    assert link.startswith("/reset-password?token=")
    assert 'data-testid="reset-form"' in assert_page(await browser.get(link))

    short = await browser.post("/reset-password", {"token": token_in(message), "password": "short"})
    assert_page(short, 422)
    assert await _login_status(hosted, owner.email, DEFAULT_PASSWORD) == 200  # unchanged

    done = await browser.post(
        "/reset-password", {"token": token_in(message), "password": NEW_PASSWORD}
    )
    assert 'href="/login"' in assert_page(done)
    assert await _login_status(hosted, owner.email, NEW_PASSWORD) == 200
    assert await _login_status(hosted, owner.email, DEFAULT_PASSWORD) == 401
    assert (await browser.get(link)).status_code == 400  # single use
    reused = await browser.post(
        "/reset-password", {"token": token_in(message), "password": "another passphrase 43"}
    )
    assert_page(reused, 400)
    assert await _login_status(hosted, owner.email, NEW_PASSWORD) == 200


async def test_forgot_password_says_nothing_about_unknown_addresses(
    inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    browser = await create_hosted_browser()
    unknown = unique_email("nobody")
    answer = await browser.post("/forgot-password", {"email": unknown})
    assert "If an account uses this address" in assert_page(answer)
    assert inbox.to(unknown) == []
    bad = await browser.post("/forgot-password", {"email": "not an address"})
    assert_page(bad, 422)
    assert (await browser.http.post("/forgot-password", data={"email": unknown})).status_code == 403


async def test_reset_links_that_do_not_work(
    hosted: AsyncClient,
    inbox: Inbox,
    owner_engine: AsyncEngine,
    create_hosted_browser: BrowserFactory,
) -> None:
    browser = await create_hosted_browser()
    assert_page(await browser.get("/reset-password"), 400)
    assert_page(await browser.get(f"/reset-password?token={BAD_TOKEN}"), 400)
    owner = await create_tenant(hosted)
    # A verification token is not a reset token.
    verification = token_in(await mail_to(inbox, owner.email))
    assert_page(await browser.get(f"/reset-password?token={verification}"), 400)
    await browser.post("/forgot-password", {"email": owner.email})
    message = await mail_to(inbox, owner.email, count=2)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE account_tokens SET expires_at = now() - interval '1 second'"
                " WHERE email = :e"
            ),
            {"e": owner.email},
        )
    assert_page(await browser.get(link_in(message)), 400)
    expired = await browser.post(
        "/reset-password", {"token": token_in(message), "password": NEW_PASSWORD}
    )
    assert_page(expired, 400)
    assert await _login_status(hosted, owner.email, DEFAULT_PASSWORD) == 200


# ------------------------------------------------------------------------------ invitations


async def test_a_new_user_accepts_an_invitation_with_a_password(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    email = unique_email("invitee")
    await _invite(hosted, owner, email)
    message = await mail_to(inbox, email)
    browser = await create_hosted_browser()
    html = assert_page(await browser.get(link_in(message)))
    assert f'data-testid="invite-email">{email}<' in html
    assert 'data-testid="invite-role">editor<' in html
    assert 'name="password"' in html

    token = token_in(message)
    missing = await browser.post("/accept-invitation", {"token": token})
    assert "Choose a password" in assert_page(missing, 400)
    short = await browser.post("/accept-invitation", {"token": token, "password": "short"})
    assert_page(short, 422)
    assert await _login_status(hosted, email, "short") == 401  # no account was made

    done = await browser.post("/accept-invitation", {"token": token, "password": NEW_PASSWORD})
    assert 'data-testid="account-done"' in assert_page(done)
    response = await hosted.post(
        "/api/v1/auth/login",
        json={"email": email, "password": NEW_PASSWORD, "tenant": owner.tenant_slug},
    )
    assert response.status_code == 200, response.text
    assert (await browser.get(link_in(message))).status_code == 400  # single use


async def test_an_existing_user_joins_without_a_password(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    other = await create_tenant(hosted)  # an account of another tenant
    await _invite(hosted, owner, other.email, role="viewer")
    message = await mail_to(inbox, other.email, count=2)
    browser = await create_hosted_browser()
    html = assert_page(await browser.get(link_in(message)))
    assert 'data-testid="invite-existing"' in html
    assert 'name="password"' not in html
    done = await browser.post("/accept-invitation", {"token": token_in(message)})
    assert_page(done)
    response = await hosted.post(
        "/api/v1/auth/login",
        json={"email": other.email, "password": DEFAULT_PASSWORD, "tenant": owner.tenant_slug},
    )
    assert response.status_code == 200, response.text
    members = await hosted.get("/api/v1/members", headers=owner.headers)
    roles = {m["email"]: m["role"] for m in members.json()}
    assert roles[other.email] == "viewer"


async def test_a_link_opened_in_someone_elses_session_adds_the_invited_address(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    email = unique_email("invitee")
    await _invite(hosted, owner, email)
    message = await mail_to(inbox, email)
    stranger = await create_tenant(hosted)
    browser = await create_hosted_browser(stranger)
    html = assert_page(await browser.get(link_in(message)))
    assert 'data-testid="invite-other-session"' in html
    await browser.post("/accept-invitation", {"token": token_in(message), "password": NEW_PASSWORD})
    members = await hosted.get("/api/v1/members", headers=owner.headers)
    emails = {m["email"] for m in members.json()}
    assert email in emails and stranger.email not in emails


async def test_revoked_or_expired_invitations_do_not_work(
    hosted: AsyncClient,
    inbox: Inbox,
    owner_engine: AsyncEngine,
    create_hosted_browser: BrowserFactory,
) -> None:
    owner = await create_tenant(hosted)
    email = unique_email("invitee")
    invitation = await _invite(hosted, owner, email)
    message = await mail_to(inbox, email)
    revoked = await hosted.delete(f"/api/v1/invitations/{invitation}", headers=owner.headers)
    assert revoked.status_code == 204
    browser = await create_hosted_browser()
    assert_page(await browser.get(link_in(message)), 400)
    refused = await browser.post(
        "/accept-invitation", {"token": token_in(message), "password": NEW_PASSWORD}
    )
    assert "This link is not valid" in assert_page(refused, 400)

    later = unique_email("invitee")
    await _invite(hosted, owner, later)
    expiring = await mail_to(inbox, later)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE account_tokens SET expires_at = now() - interval '1 second'"
                " WHERE email = :e"
            ),
            {"e": later},
        )
    assert_page(await browser.get(link_in(expiring)), 400)
    assert_page(await browser.get("/accept-invitation"), 400)
    assert_page(await browser.get(f"/accept-invitation?token={BAD_TOKEN}"), 400)
    assert await _login_status(hosted, later, NEW_PASSWORD) == 401


async def test_accepting_twice_into_the_same_tenant_is_a_conflict(
    hosted: AsyncClient, inbox: Inbox, create_hosted_browser: BrowserFactory
) -> None:
    owner = await create_tenant(hosted)
    email = unique_email("invitee")
    await _invite(hosted, owner, email)
    await _invite(hosted, owner, email, role="viewer")  # a second link, before joining
    first, second = await mail_to(inbox, email), await mail_to(inbox, email, count=2)
    browser = await create_hosted_browser()
    joined = await browser.post(
        "/accept-invitation", {"token": token_in(first), "password": NEW_PASSWORD}
    )
    assert_page(joined)
    again = await browser.post("/accept-invitation", {"token": token_in(second)})
    assert "Already a member" in assert_page(again, 409)
    members = await hosted.get("/api/v1/members", headers=owner.headers)
    roles = {m["email"]: m["role"] for m in members.json()}
    assert roles[email] == "editor"  # the second link changed nothing

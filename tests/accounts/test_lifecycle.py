"""Email verification, password reset and invitations, mailed through a real SMTP server
(aiosmtpd in the test process); each token single-use and expiring."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.accounts.smtp import Inbox, mail_to, token_in
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    create_member,
    create_tenant,
    login,
    unique_email,
)
from tests.runs.factories import create_job, python_task

NEW_PASSWORD = "a brand new passphrase 42"


async def _expire_tokens(owner_engine: AsyncEngine, email: str) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE account_tokens SET expires_at = now() - interval '1 second'"
                " WHERE email = :e"
            ),
            {"e": email},
        )


# ------------------------------------------------------------------------------ verification


async def test_signup_mails_a_verification_link_and_unverified_accounts_cannot_run(
    hosted: AsyncClient, inbox: Inbox
) -> None:
    owner = await create_tenant(hosted)
    message = await mail_to(inbox, owner.email)
    assert message["Subject"] == "Verify your email for Baton"
    job = await create_job(hosted, owner, [python_task("a")])  # exploring is allowed
    run = f"/api/v1/jobs/{job['id']}/runs"
    refused = await hosted.post(run, json={}, headers=owner.headers)
    assert_error(refused, 403, "email_unverified")
    verified = await hosted.post("/api/v1/auth/verify-email", json={"token": token_in(message)})
    assert verified.status_code == 204, verified.text
    allowed = await hosted.post(run, json={"delay_seconds": 3600}, headers=owner.headers)
    assert allowed.status_code == 201, allowed.text
    again = await hosted.post("/api/v1/auth/verify-email", json={"token": token_in(message)})
    assert_error(again, 400, "bad_request")  # single use


async def test_verification_link_expires_and_can_be_sent_again(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    owner = await create_tenant(hosted)
    first = await mail_to(inbox, owner.email)
    await _expire_tokens(owner_engine, owner.email)
    expired = await hosted.post("/api/v1/auth/verify-email", json={"token": token_in(first)})
    assert_error(expired, 400, "bad_request")
    resend = await hosted.post("/api/v1/me/verify-email", headers=owner.headers)
    assert resend.status_code == 202, resend.text
    second = await mail_to(inbox, owner.email, 2)
    ok = await hosted.post("/api/v1/auth/verify-email", json={"token": token_in(second)})
    assert ok.status_code == 204, ok.text
    done = await hosted.post("/api/v1/me/verify-email", headers=owner.headers)
    assert_error(done, 409, "conflict")


async def test_verification_tokens_are_stored_hashed(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    owner = await create_tenant(hosted)
    token = token_in(await mail_to(inbox, owner.email))
    async with owner_engine.connect() as conn:
        stored = list(
            (
                await conn.execute(
                    text("SELECT token_hash FROM account_tokens WHERE email = :e"),
                    {"e": owner.email},
                )
            ).scalars()
        )
    assert stored and token not in stored


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("x" * 9, 422, "validation_failed"),  # shorter than any token
        ("not-a-real-token-at-all", 400, "bad_request"),  # well formed, unknown
        ("y" * 201, 422, "validation_failed"),  # longer than any token
    ],
)
async def test_bad_tokens(hosted: AsyncClient, token: str, status: int, code: str) -> None:
    response = await hosted.post("/api/v1/auth/verify-email", json={"token": token})
    assert_error(response, status, code)


# ------------------------------------------------------------------------------ reset


async def test_password_reset_end_to_end(hosted: AsyncClient, inbox: Inbox) -> None:
    owner = await create_tenant(hosted)
    asked = await hosted.post("/api/v1/auth/password-reset", json={"email": owner.email})
    assert asked.status_code == 202
    message = await mail_to(inbox, owner.email, 2)  # after the verification mail
    assert message["Subject"] == "Reset your Baton password"
    body = {"token": token_in(message), "password": NEW_PASSWORD}
    done = await hosted.post("/api/v1/auth/password-reset/confirm", json=body)
    assert done.status_code == 204, done.text
    await login(hosted, owner.email, NEW_PASSWORD)
    old = await hosted.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert_error(old, 401, "invalid_credentials")
    # Sessions from before the reset end: the old refresh token no longer works.
    refresh = await hosted.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert_error(refresh, 401, "invalid_token")
    reused = await hosted.post("/api/v1/auth/password-reset/confirm", json=body)
    assert_error(reused, 400, "bad_request")


async def test_password_reset_does_not_reveal_accounts(hosted: AsyncClient, inbox: Inbox) -> None:
    unknown = unique_email("nobody")
    answer = await hosted.post("/api/v1/auth/password-reset", json={"email": unknown})
    assert answer.status_code == 202 and answer.content == b""
    assert inbox.to(unknown) == []


async def test_password_reset_link_expires_and_keeps_the_policy(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    owner = await create_tenant(hosted)
    await hosted.post("/api/v1/auth/password-reset", json={"email": owner.email})
    token = token_in(await mail_to(inbox, owner.email, 2))
    weak = await hosted.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"}
    )
    assert_error(weak, 422, "validation_failed")
    await _expire_tokens(owner_engine, owner.email)
    late = await hosted.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_error(late, 400, "bad_request")


# ------------------------------------------------------------------------------ invitations


async def test_invitation_creates_the_account_and_membership(
    hosted: AsyncClient, inbox: Inbox
) -> None:
    owner = await create_tenant(hosted)
    invitee = unique_email("invitee")
    created = await hosted.post(
        "/api/v1/invitations", json={"email": invitee, "role": "editor"}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    listed = await hosted.get("/api/v1/invitations", headers=owner.headers)
    assert [i["email"] for i in listed.json()] == [invitee]
    token = token_in(await mail_to(inbox, invitee))
    accepted = await hosted.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["role"] == "editor"
    tokens = await login(hosted, invitee, DEFAULT_PASSWORD, owner.tenant_slug)
    me = await hosted.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["role"] == "editor"
    again = await hosted.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert_error(again, 400, "bad_request")
    assert (await hosted.get("/api/v1/invitations", headers=owner.headers)).json() == []


async def test_an_existing_account_accepts_without_a_password(
    hosted: AsyncClient, inbox: Inbox
) -> None:
    owner = await create_tenant(hosted)
    other = await create_tenant(hosted)
    await hosted.post(
        "/api/v1/invitations", json={"email": other.email, "role": "viewer"}, headers=owner.headers
    )
    token = token_in(await mail_to(inbox, other.email, 2))
    accepted = await hosted.post("/api/v1/auth/invitations/accept", json={"token": token})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["tenant_id"] == str(owner.tenant_id)


async def test_invitations_anonymous_wrong_role_other_tenant_and_not_found(
    hosted: AsyncClient, inbox: Inbox
) -> None:
    owner = await create_tenant(hosted)
    stranger = await create_tenant(hosted)
    body = {"email": unique_email("x"), "role": "viewer"}
    assert_error(await hosted.post("/api/v1/invitations", json=body), 401, "unauthenticated")
    viewer = await create_member(hosted, owner, "viewer")
    assert_error(
        await hosted.post("/api/v1/invitations", json=body, headers=viewer.headers),
        403,
        "forbidden",
    )
    admin = await create_member(hosted, owner, "admin")
    owner_role = {"email": unique_email("x"), "role": "owner"}
    assert_error(
        await hosted.post("/api/v1/invitations", json=owner_role, headers=admin.headers),
        403,
        "forbidden",
    )
    created = (await hosted.post("/api/v1/invitations", json=body, headers=owner.headers)).json()
    url = f"/api/v1/invitations/{created['id']}"
    assert_error(await hosted.delete(url, headers=stranger.headers), 404, "not_found")
    assert (await hosted.get("/api/v1/invitations", headers=stranger.headers)).json() == []
    assert (await hosted.delete(url, headers=owner.headers)).status_code == 204
    assert_error(await hosted.delete(url, headers=owner.headers), 404, "not_found")
    token = token_in(await mail_to(inbox, body["email"]))
    revoked = await hosted.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert_error(revoked, 400, "bad_request")


async def test_invitation_expires(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    owner = await create_tenant(hosted)
    invitee = unique_email("late")
    await hosted.post(
        "/api/v1/invitations", json={"email": invitee, "role": "viewer"}, headers=owner.headers
    )
    token = token_in(await mail_to(inbox, invitee))
    await _expire_tokens(owner_engine, invitee)
    late = await hosted.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert_error(late, 400, "bad_request")


async def test_without_smtp_mail_is_logged(client: AsyncClient, owner: Account) -> None:
    """The suite's own app has no SMTP host (like ``baton dev``): nothing fails."""
    response = await client.post("/api/v1/auth/password-reset", json={"email": owner.email})
    assert response.status_code == 202

"""The auth endpoints end to end: sign-up, login, OAuth2 form, throttling, refresh, logout.

Everything runs against the real app, PostgreSQL and Redis. Every account has a unique
email, so the per-account failed-login counters in Redis never collide between tests.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.security import AccessClaims, verify_access_token
from backend.core.settings import Settings
from kernel.wire import keys
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

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
TOKEN_FORM = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"

# ---------------------------------------------------------------------------- helpers


def claims(settings: Settings, access_token: str) -> AccessClaims:
    """The verified claims of an access token the app issued."""
    return verify_access_token(settings, access_token)


async def get_me(client: AsyncClient, access_token: str) -> Response:
    return await client.get(ME, headers=bearer(access_token))


async def try_login(
    client: AsyncClient, email: str, password: str = DEFAULT_PASSWORD, tenant: str | None = None
) -> Response:
    payload = {"email": email, "password": password}
    if tenant is not None:
        payload["tenant"] = tenant
    return await client.post(LOGIN, json=payload)


async def try_refresh(client: AsyncClient, refresh_token: str) -> Response:
    return await client.post(REFRESH, json={"refresh_token": refresh_token})


async def signup(
    client: AsyncClient, email: str, tenant_name: str, password: str = DEFAULT_PASSWORD
) -> Response:
    return await client.post(
        SIGNUP, json={"email": email, "password": password, "tenant_name": tenant_name}
    )


async def join_second_tenant(client: AsyncClient, account: Account) -> Account:
    """Sign up another tenant with an existing account's email and password."""
    name = f"Second {uuid.uuid4().hex[:8]}"
    response = await signup(client, account.email, name, account.password)
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        email=account.email,
        password=account.password,
        user_id=uuid.UUID(body["user"]["id"]),
        tenant_id=uuid.UUID(body["tenant"]["id"]),
        tenant_slug=body["tenant"]["slug"],
        role="owner",
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


async def audit_events(client: AsyncClient, admin_token: str, action: str) -> list[dict[str, Any]]:
    """Audit events of the caller's tenant matching ``action``, read through the API."""
    response = await client.get(
        "/api/v1/audit", params={"action": action, "limit": 200}, headers=bearer(admin_token)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def with_tenant_part(raw_token: str, tenant_id: uuid.UUID) -> str:
    """The same opaque token, but naming another tenant."""
    prefix, _, secret = raw_token.split("_", 2)
    return f"{prefix}_{tenant_id.hex}_{secret}"


# ---------------------------------------------------------------------------- sign-up


async def test_signup_returns_session_tenant_and_user(
    client: AsyncClient, settings: Settings
) -> None:
    email = unique_email("signup")
    name = f"Acme Rockets {uuid.uuid4().hex[:8]}"
    response = await signup(client, email, name)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    assert body["refresh_token"].startswith("brt_")
    assert set(body["tenant"]) == {"id", "slug", "name"}
    assert set(body["user"]) == {"id", "email"}
    assert body["tenant"]["name"] == name
    assert body["user"]["email"] == email

    issued = claims(settings, body["access_token"])
    assert issued.user_id == uuid.UUID(body["user"]["id"])
    assert issued.tenant_id == uuid.UUID(body["tenant"]["id"])
    assert issued.role == "owner"

    me = await get_me(client, body["access_token"])
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "owner"
    assert me.json()["tenant"]["slug"] == body["tenant"]["slug"]
    assert me.json()["auth"] == "session"


async def test_signup_normalises_the_email(client: AsyncClient) -> None:
    email = unique_email("mixed")
    response = await signup(client, f"  {email.upper()} ", "Mixed Case Co")

    assert response.status_code == 201, response.text
    assert response.json()["user"]["email"] == email
    again = await signup(client, email, "Mixed Case Two")
    assert again.status_code == 201, again.text
    assert again.json()["user"]["id"] == response.json()["user"]["id"]


async def test_signup_derives_slug_and_deduplicates_it(client: AsyncClient) -> None:
    marker = uuid.uuid4().hex[:8]
    name = f"  Acme & Sons, Rocket Works {marker}!  "
    first = await signup(client, unique_email("slug"), name)
    second = await signup(client, unique_email("slug"), name)

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    slug = first.json()["tenant"]["slug"]
    assert slug == f"acme-sons-rocket-works-{marker}"
    other = second.json()["tenant"]["slug"]
    assert other != slug
    assert re.fullmatch(rf"{re.escape(slug)}-[0-9a-f]{{6}}", other), other
    assert first.json()["tenant"]["id"] != second.json()["tenant"]["id"]


async def test_signup_slug_of_a_name_without_letters(client: AsyncClient) -> None:
    response = await signup(client, unique_email("slug"), "*** !!! ***")

    assert response.status_code == 201, response.text
    assert re.fullmatch(r"org(-[0-9a-f]{6})?", response.json()["tenant"]["slug"])


async def test_signup_short_password_is_refused_and_leaves_nothing(client: AsyncClient) -> None:
    email = unique_email("short")
    response = await signup(client, email, "Short Co", password="short")

    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["body", "password"]
    # No user was left behind: the same email signs up normally afterwards.
    retry = await signup(client, email, "Short Co")
    assert retry.status_code == 201, retry.text


async def test_signup_malformed_email_is_refused(client: AsyncClient) -> None:
    response = await signup(client, "not-an-email", "Bad Mail Co")

    error = assert_error(response, 422, "validation_failed")
    assert ["body", "email"] in [problem["loc"] for problem in error["details"]]


async def test_signup_unknown_field_is_refused(client: AsyncClient) -> None:
    response = await client.post(
        SIGNUP,
        json={
            "email": unique_email("extra"),
            "password": DEFAULT_PASSWORD,
            "tenant_name": "Extra Co",
            "is_superuser": True,
        },
    )

    error = assert_error(response, 422, "validation_failed")
    assert ["body", "is_superuser"] in [problem["loc"] for problem in error["details"]]


async def test_signup_existing_email_with_wrong_password_conflicts(
    client: AsyncClient, owner: Account
) -> None:
    response = await signup(client, owner.email, "Takeover Inc", password="not the right password")

    assert_error(response, 409, "conflict")
    # The existing account is untouched: its password still logs in to its one tenant.
    tokens = await login(client, owner.email, owner.password)
    assert tokens["access_token"]


async def test_signup_existing_email_with_right_password_adds_a_tenant(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    second = await join_second_tenant(client, owner)

    assert second.user_id == owner.user_id
    assert second.tenant_id != owner.tenant_id
    assert claims(settings, second.access_token).tenant_id == second.tenant_id
    me = await get_me(client, second.access_token)
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == str(second.tenant_id)
    assert me.json()["role"] == "owner"


async def test_signup_wrong_password_for_existing_account_is_throttled(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    """Sign-up checks the password of an existing account: it must not be a free oracle."""
    limit = settings.login_max_failures_per_account
    for attempt in range(limit):
        response = await signup(
            client, owner.email, f"Guess {attempt}", password=f"guess-{attempt}-xx"
        )
        assert_error(response, 409, "conflict")

    blocked = await signup(client, owner.email, "Guess right", password=owner.password)
    assert_error(blocked, 429, "rate_limited")
    assert int(blocked.headers["Retry-After"]) >= 1
    assert_error(await try_login(client, owner.email, owner.password), 429, "rate_limited")


# ---------------------------------------------------------------------------- login


async def test_login_succeeds(client: AsyncClient, settings: Settings, owner: Account) -> None:
    response = await try_login(client, owner.email, owner.password)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    issued = claims(settings, body["access_token"])
    assert issued.user_id == owner.user_id
    assert issued.tenant_id == owner.tenant_id
    assert issued.role == "owner"
    assert (await get_me(client, body["access_token"])).status_code == 200


async def test_login_email_is_case_insensitive(
    client: AsyncClient, owner: Account, settings: Settings
) -> None:
    response = await try_login(client, owner.email.upper(), owner.password)

    assert response.status_code == 200, response.text
    issued = claims(settings, response.json()["access_token"])
    assert (issued.user_id, issued.tenant_id) == (owner.user_id, owner.tenant_id)


async def test_login_wrong_password_and_unknown_email_look_the_same(
    client: AsyncClient, owner: Account
) -> None:
    wrong = await try_login(client, owner.email, "not the right password")
    unknown = await try_login(client, unique_email("nobody"), owner.password)

    wrong_error = assert_error(wrong, 401, "invalid_credentials")
    unknown_error = assert_error(unknown, 401, "invalid_credentials")
    assert wrong_error == unknown_error
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == "Bearer"


async def test_failed_login_is_audited_even_though_it_answers_401(
    client: AsyncClient, owner: Account
) -> None:
    failed = await try_login(client, owner.email, "not the right password")
    assert_error(failed, 401, "invalid_credentials")

    events = await audit_events(client, owner.access_token, "auth.login.failed")
    assert len(events) == 1
    assert events[0]["outcome"] == "failure"
    assert events[0]["actor_id"] == str(owner.user_id)
    assert events[0]["ip"] == "203.0.113.7"


async def test_login_tenant_the_account_is_not_in_is_refused(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    response = await try_login(client, owner.email, owner.password, tenant=stranger.tenant_slug)

    assert_error(response, 401, "invalid_credentials")


async def test_login_account_in_two_tenants_needs_a_tenant(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    second = await join_second_tenant(client, owner)

    ambiguous = await try_login(client, owner.email, owner.password)
    error = assert_error(ambiguous, 400, "bad_request")
    assert sorted(error["details"]["tenants"]) == sorted([owner.tenant_slug, second.tenant_slug])

    for account in (owner, second):
        response = await try_login(client, owner.email, owner.password, tenant=account.tenant_slug)
        assert response.status_code == 200, response.text
        assert claims(settings, response.json()["access_token"]).tenant_id == account.tenant_id


async def test_login_oauth2_form(client: AsyncClient, settings: Settings, owner: Account) -> None:
    second = await join_second_tenant(client, owner)

    response = await client.post(
        TOKEN_FORM,
        data={
            "username": owner.email,
            "password": owner.password,
            "scope": f"openid tenant:{second.tenant_slug}",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    assert claims(settings, response.json()["access_token"]).tenant_id == second.tenant_id
    ambiguous = await client.post(
        TOKEN_FORM, data={"username": owner.email, "password": owner.password}
    )
    assert_error(ambiguous, 400, "bad_request")


async def test_login_oauth2_form_refuses_bad_input(client: AsyncClient, owner: Account) -> None:
    wrong = await client.post(
        TOKEN_FORM, data={"username": owner.email, "password": "not the right password"}
    )
    not_email = await client.post(
        TOKEN_FORM, data={"username": "not-an-email", "password": owner.password}
    )
    missing = await client.post(TOKEN_FORM, data={"username": owner.email})

    assert_error(wrong, 401, "invalid_credentials")
    assert_error(not_email, 422, "validation_failed")
    assert_error(missing, 422, "validation_failed")


# ---------------------------------------------------------------------------- throttling


async def test_login_throttle_blocks_account_after_limit(
    client: AsyncClient, settings: Settings, redis: Redis, owner: Account
) -> None:
    limit = settings.login_max_failures_per_account
    for _ in range(limit):
        failed = await try_login(client, owner.email, "wrong password!")
        assert_error(failed, 401, "invalid_credentials")

    blocked = await try_login(client, owner.email, owner.password)

    error = assert_error(blocked, 429, "rate_limited")
    assert "Too many failed logins" in error["message"]
    retry_after = int(blocked.headers["Retry-After"])
    assert 1 <= retry_after <= settings.login_failure_window_seconds
    assert int(await redis.get(keys.login_failures_account(owner.email)) or 0) == limit
    # The OAuth2 form shares the counter.
    form = await client.post(TOKEN_FORM, data={"username": owner.email, "password": owner.password})
    assert_error(form, 429, "rate_limited")


async def test_login_throttle_is_per_account(
    client: AsyncClient, settings: Settings, owner: Account, stranger: Account
) -> None:
    for _ in range(settings.login_max_failures_per_account):
        await try_login(client, owner.email, "wrong password!")
    assert_error(await try_login(client, owner.email, owner.password), 429, "rate_limited")

    other = await try_login(client, stranger.email, stranger.password)

    assert other.status_code == 200, other.text


async def test_login_throttle_counts_unknown_emails_too(
    client: AsyncClient, settings: Settings
) -> None:
    email = unique_email("ghost")
    for _ in range(settings.login_max_failures_per_account):
        failed = await try_login(client, email, "whatever password")
        assert_error(failed, 401, "invalid_credentials")

    assert_error(await try_login(client, email, "whatever password"), 429, "rate_limited")


async def test_successful_login_clears_the_account_counter(
    client: AsyncClient, settings: Settings, redis: Redis, owner: Account
) -> None:
    below_limit = settings.login_max_failures_per_account - 1
    for _ in range(below_limit):
        failed = await try_login(client, owner.email, "wrong password!")
        assert_error(failed, 401, "invalid_credentials")
    assert (await try_login(client, owner.email, owner.password)).status_code == 200
    assert await redis.get(keys.login_failures_account(owner.email)) is None

    for _ in range(below_limit):
        failed = await try_login(client, owner.email, "wrong password!")
        assert_error(failed, 401, "invalid_credentials")

    # 8 failures in total, but never 5 in a row since the success: still allowed.
    response = await try_login(client, owner.email, owner.password)
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------- refresh


async def test_refresh_rotates_the_pair(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    response = await try_refresh(client, owner.refresh_token)

    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != owner.refresh_token
    assert pair["access_token"] != owner.access_token
    old, new = claims(settings, owner.access_token), claims(settings, pair["access_token"])
    assert (new.user_id, new.tenant_id, new.role) == (old.user_id, old.tenant_id, old.role)
    assert new.jti != old.jti
    assert (await get_me(client, pair["access_token"])).status_code == 200
    # The old refresh token is spent.
    assert_error(await try_refresh(client, owner.refresh_token), 401, "refresh_token_reused")
    events = await audit_events(client, owner.access_token, "auth.token.refreshed")
    assert len(events) == 1


async def test_refresh_chain_keeps_working(client: AsyncClient, owner: Account) -> None:
    token = owner.refresh_token
    seen = {token}
    for _ in range(3):
        response = await try_refresh(client, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
        assert token not in seen  # rotated every time
        seen.add(token)
        me = await get_me(client, response.json()["access_token"])
        assert me.status_code == 200 and me.json()["user"]["id"] == str(owner.user_id)


async def test_refresh_reuse_revokes_the_family_and_is_audited(
    client: AsyncClient, owner: Account
) -> None:
    other_session = await login(client, owner.email, owner.password)
    first = await try_refresh(client, owner.refresh_token)
    assert first.status_code == 200, first.text
    newer = first.json()["refresh_token"]

    reused = await try_refresh(client, owner.refresh_token)

    error = assert_error(reused, 401, "refresh_token_reused")
    assert reused.headers["WWW-Authenticate"] == "Bearer"
    assert "revoked" in error["message"]
    # The whole family died with it, including the token issued from the stolen one...
    assert_error(await try_refresh(client, newer), 401, "invalid_token")
    # ...but another login (another family) of the same user is untouched.
    assert (await try_refresh(client, other_session["refresh_token"])).status_code == 200
    events = await audit_events(client, owner.access_token, "auth.refresh.reused")
    assert len(events) == 1
    assert events[0]["outcome"] == "failure"
    assert events[0]["target_type"] == "token_family"
    assert events[0]["actor_id"] == str(owner.user_id)


async def test_refresh_reuse_side_effects_are_committed(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    """The 401 must not roll back the family revocation (checked in the database)."""
    newer = (await try_refresh(client, owner.refresh_token)).json()["refresh_token"]
    assert_error(await try_refresh(client, owner.refresh_token), 401, "refresh_token_reused")

    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT used_at IS NOT NULL, revoked_at IS NOT NULL FROM refresh_tokens "
                    "WHERE tenant_id = :tenant AND user_id = :user"
                ),
                {"tenant": owner.tenant_id, "user": owner.user_id},
            )
        ).all()
    assert len(rows) == 2
    assert all(revoked for _, revoked in rows)
    assert sorted(used for used, _ in rows) == [False, True]
    assert_error(await try_refresh(client, newer), 401, "invalid_token")


async def test_concurrent_refresh_of_one_token_lets_exactly_one_win(
    client: AsyncClient, owner: Account
) -> None:
    """Two requests racing with the same token: one rotates it, the other counts as reuse."""
    responses = await asyncio.gather(
        try_refresh(client, owner.refresh_token), try_refresh(client, owner.refresh_token)
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401], [response.text for response in responses]
    loser = next(response for response in responses if response.status_code == 401)
    assert_error(loser, 401, "refresh_token_reused")
    winner = next(response for response in responses if response.status_code == 200)
    # Reuse detection revoked the family, the winner's new token included.
    assert_error(await try_refresh(client, winner.json()["refresh_token"]), 401, "invalid_token")


async def test_expired_refresh_token_is_refused(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' "
                "WHERE tenant_id = :tenant AND user_id = :user"
            ),
            {"tenant": owner.tenant_id, "user": owner.user_id},
        )

    error = assert_error(await try_refresh(client, owner.refresh_token), 401, "invalid_token")

    assert "expired" in error["message"]
    # Refused, not spent: presenting it again is no "reuse" and revokes nothing.
    again = await try_refresh(client, owner.refresh_token)
    assert_error(again, 401, "invalid_token")


async def test_refresh_malformed_tokens_answer_401(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    secret_part = owner.refresh_token.split("_", 2)[2]
    malformed = [
        "garbage",
        "brt_",
        "brt__",
        f"brt_{owner.tenant_id.hex}_short",
        f"brt_not-a-uuid_{secret_part}",
        f"brt_{owner.tenant_id.hex[:-2]}_{secret_part}",
        f"xyz_{owner.tenant_id.hex}_{secret_part}",
        f"bat_{owner.tenant_id.hex}_{secret_part}",
        owner.refresh_token.replace("brt_", "BRT_", 1),
        with_tenant_part(owner.refresh_token, stranger.tenant_id),
        with_tenant_part(owner.refresh_token, uuid.uuid4()),
        f"brt_{owner.tenant_id.hex}_{'x' * 43}",
        f"brt_{owner.tenant_id.hex}_{'é' * 40}",
        owner.access_token[:500],
    ]
    for raw in malformed:
        response = await try_refresh(client, raw)
        assert_error(response, 401, "invalid_token")

    # None of that disturbed the real token.
    assert (await try_refresh(client, owner.refresh_token)).status_code == 200


async def test_refresh_invalid_bodies_answer_422(client: AsyncClient) -> None:
    nul = {"refresh_token": f"brt_{uuid.uuid4().hex}_{'x' * 42}\x00"}  # the input policy
    bad = ({}, {"refresh_token": ""}, {"refresh_token": "x" * 513}, {"refresh_token": 5}, nul)
    for body in bad:
        assert_error(await client.post(REFRESH, json=body), 422, "validation_failed")


async def test_refresh_token_of_another_tenant_name_finds_nothing(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    """Relabelling a stranger's token with my tenant must not let me use it either."""
    forged = with_tenant_part(stranger.refresh_token, owner.tenant_id)

    assert_error(await try_refresh(client, forged), 401, "invalid_token")
    assert (await try_refresh(client, stranger.refresh_token)).status_code == 200


# ---------------------------------------------------------------------------- logout


async def test_logout_with_refresh_token_ends_that_session(
    client: AsyncClient, settings: Settings, redis: Redis, owner: Account
) -> None:
    other_session = await login(client, owner.email, owner.password)

    response = await client.post(
        LOGOUT, json={"refresh_token": owner.refresh_token}, headers=owner.headers
    )

    assert response.status_code == 204, response.text
    assert_error(await get_me(client, owner.access_token), 401, "invalid_token")
    assert_error(await try_refresh(client, owner.refresh_token), 401, "invalid_token")
    jti = claims(settings, owner.access_token).jti
    ttl = await redis.ttl(keys.revoked_access_token(jti))
    assert 0 < ttl <= settings.access_token_ttl_seconds
    # The other session is another family: still alive.
    assert (await get_me(client, other_session["access_token"])).status_code == 200
    assert (await try_refresh(client, other_session["refresh_token"])).status_code == 200
    events = await audit_events(client, other_session["access_token"], "auth.logout")
    assert len(events) == 1
    assert events[0]["actor_id"] == str(owner.user_id)


async def test_logout_without_body_revokes_every_refresh_token_in_the_tenant(
    client: AsyncClient, owner: Account
) -> None:
    other_session = await login(client, owner.email, owner.password)
    second = await join_second_tenant(client, owner)

    response = await client.post(LOGOUT, headers=owner.headers)

    assert response.status_code == 204, response.text
    assert_error(await get_me(client, owner.access_token), 401, "invalid_token")
    assert_error(await try_refresh(client, owner.refresh_token), 401, "invalid_token")
    assert_error(await try_refresh(client, other_session["refresh_token"]), 401, "invalid_token")
    # Sessions of the same user in another tenant are not touched.
    assert (await try_refresh(client, second.refresh_token)).status_code == 200


async def test_logout_with_empty_json_body_revokes_everything_too(
    client: AsyncClient, owner: Account
) -> None:
    response = await client.post(LOGOUT, json={}, headers=owner.headers)

    assert response.status_code == 204, response.text
    assert_error(await try_refresh(client, owner.refresh_token), 401, "invalid_token")


async def test_logout_with_api_token_is_refused(client: AsyncClient, owner: Account) -> None:
    token = await create_api_token(client, owner, "viewer")

    response = await client.post(LOGOUT, headers=bearer(token["token"]))

    assert_error(response, 400, "bad_request")
    assert (await client.get(ME, headers=bearer(token["token"]))).status_code == 200


async def test_logout_with_someone_elses_refresh_token_is_refused(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    colleague = await create_member(client, owner, "editor")
    for foreign in (colleague.refresh_token, stranger.refresh_token, "garbage"):
        response = await client.post(LOGOUT, json={"refresh_token": foreign}, headers=owner.headers)
        assert_error(response, 401, "invalid_token")

    # Nothing was revoked: neither the foreign tokens nor the caller's session.
    assert (await try_refresh(client, colleague.refresh_token)).status_code == 200
    assert (await try_refresh(client, stranger.refresh_token)).status_code == 200
    assert (await get_me(client, owner.access_token)).status_code == 200


async def test_logout_needs_authentication(client: AsyncClient, owner: Account) -> None:
    response = await client.post(LOGOUT, json={"refresh_token": owner.refresh_token})

    assert_error(response, 401, "unauthenticated")
    assert (await try_refresh(client, owner.refresh_token)).status_code == 200


# ---------------------------------------------------------------------------- membership


async def test_removed_member_loses_access_at_once(client: AsyncClient, owner: Account) -> None:
    member = await create_member(client, owner, "editor")
    assert (await get_me(client, member.access_token)).status_code == 200

    removed = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)

    assert removed.status_code == 204, removed.text
    assert_error(await get_me(client, member.access_token), 401, "invalid_token")
    assert_error(await try_refresh(client, member.refresh_token), 401, "invalid_token")
    assert_error(await try_login(client, member.email, member.password), 401, "invalid_credentials")


async def test_demoted_member_token_carries_the_new_role(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    member = await create_member(client, owner, "admin")
    assert (await client.get("/api/v1/audit", headers=member.headers)).status_code == 200

    changed = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "viewer"}, headers=owner.headers
    )

    assert changed.status_code == 200, changed.text
    me = await get_me(client, member.access_token)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "viewer"
    assert_error(await client.get("/api/v1/audit", headers=member.headers), 403, "forbidden")
    # A refreshed access token states the new role in its claims too.
    refreshed = await try_refresh(client, member.refresh_token)
    assert refreshed.status_code == 200, refreshed.text
    assert claims(settings, refreshed.json()["access_token"]).role == "viewer"

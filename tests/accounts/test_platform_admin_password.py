"""A platform administrator's password is set on the server only (`baton admin
set-password`, as the owner role): the API mails no reset link for it, refuses a link sent
before the promotion, and the database refuses the runtime role the change outright - a
compromised API process cannot take over platform administration that way."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.admin.service import set_platform_admin_password
from backend.core.settings import Settings
from tests.accounts.smtp import Inbox, mail_to, token_in
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_tenant, login, make_superuser

NEW_PASSWORD = "a brand new passphrase 42"


async def test_no_reset_link_is_mailed_for_a_platform_administrator(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    admin = await create_tenant(hosted)
    await make_superuser(owner_engine, admin)
    other = await create_tenant(hosted)
    for account in (admin, other):
        asked = await hosted.post("/api/v1/auth/password-reset", json={"email": account.email})
        assert asked.status_code == 202 and asked.content == b""  # the same answer
    await mail_to(inbox, other.email, 2)  # the other account's link came, after ours
    assert [m["Subject"] for m in inbox.to(admin.email)] == ["Verify your email for Baton"]


async def test_a_link_sent_before_the_promotion_is_refused(
    hosted: AsyncClient, inbox: Inbox, owner_engine: AsyncEngine
) -> None:
    account = await create_tenant(hosted)
    asked = await hosted.post("/api/v1/auth/password-reset", json={"email": account.email})
    assert asked.status_code == 202
    token = token_in(await mail_to(inbox, account.email, 2))
    await make_superuser(owner_engine, account)
    body = {"token": token, "password": NEW_PASSWORD}
    refused = await hosted.post("/api/v1/auth/password-reset/confirm", json=body)
    assert_error(refused, 403, "forbidden")
    assert "baton admin set-password" in refused.json()["error"]["message"]
    await login(hosted, account.email, account.password)  # unchanged


async def _set_password_as(engine: AsyncEngine, account: Account) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET password_hash = 'forged' WHERE id = :id"),
            {"id": account.user_id},
        )


async def test_the_database_refuses_the_runtime_role_a_platform_admins_password(
    owner: Account, stranger: Account, runtime_engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    await make_superuser(owner_engine, owner)
    with pytest.raises(DBAPIError, match="platform administrator"):
        await _set_password_as(runtime_engine, owner)
    # Any other account's password stays the runtime role's to set (password reset).
    await _set_password_as(runtime_engine, stranger)
    async with owner_engine.connect() as conn:
        hashes = dict(
            (
                await conn.execute(
                    text("SELECT id, password_hash FROM users WHERE id = ANY(:ids)"),
                    {"ids": [owner.user_id, stranger.user_id]},
                )
            ).all()
        )
    assert hashes[owner.user_id] != "forged" and hashes[stranger.user_id] == "forged"


async def test_set_password_as_the_owner_role_ends_the_administrators_sessions(
    client: AsyncClient,
    superuser: Account,
    owner: Account,
    settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    async with AsyncSession(owner_engine) as session:
        assert await set_platform_admin_password(session, settings, superuser.email, NEW_PASSWORD)
        assert not await set_platform_admin_password(session, settings, owner.email, NEW_PASSWORD)
        await session.commit()
    await login(client, superuser.email, NEW_PASSWORD)
    old = await client.post(
        "/api/v1/auth/login", json={"email": superuser.email, "password": superuser.password}
    )
    assert_error(old, 401, "invalid_credentials")
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": superuser.refresh_token}
    )
    assert_error(refresh, 401, "invalid_token")

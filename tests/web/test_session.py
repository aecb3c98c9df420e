"""Dashboard sessions: refresh-cookie rotation under concurrency and on failed requests."""

from __future__ import annotations

import asyncio
import uuid

from httpx import AsyncClient

from backend.core.security import hash_secret
from kernel.wire import keys
from tests.fixtures.factories import Account
from tests.web.helpers import Browser, BrowserFactory

EXPIRED = "expired.or.garbage"


async def test_concurrent_requests_share_one_rotation(owner_browser: Browser) -> None:
    """Requests racing with the same refresh cookie all pass; none revokes the session."""
    refresh = owner_browser.http.cookies.get("baton_refresh") or ""
    transport = owner_browser.http._transport
    tabs = [AsyncClient(transport=transport, base_url="http://baton.test") for _ in range(4)]
    for tab in tabs:
        tab.cookies.set("baton_access", EXPIRED, domain="baton.test")
        tab.cookies.set("baton_refresh", refresh, domain="baton.test")
    try:
        responses = await asyncio.gather(*(tab.get("/settings/members") for tab in tabs))
    finally:
        await asyncio.gather(*(tab.aclose() for tab in tabs))
    assert [r.status_code for r in responses] == [200] * 4
    issued = {
        c.split(";")[0]
        for r in responses
        for c in r.headers.get_list("set-cookie")
        if c.startswith("baton_refresh=")
    }
    assert len(issued) == 1, "every request got the same rotated pair"
    # The rotated pair works on its own afterwards.
    async with AsyncClient(transport=transport, base_url="http://baton.test") as fresh:
        fresh.cookies.set("baton_refresh", issued.pop().removeprefix("baton_refresh="))
        assert (await fresh.get("/settings/members")).status_code == 200


async def test_a_failed_request_does_not_burn_the_refresh_cookie(owner_browser: Browser) -> None:
    """A 404 rolls its transaction back, rotation included: the old cookies stay valid."""
    owner_browser.set_cookie("baton_access", EXPIRED)
    refresh = owner_browser.http.cookies.get("baton_refresh")
    missing = await owner_browser.get(f"/runs/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert not any(
        c.startswith(("baton_refresh=", "baton_access="))
        for c in missing.headers.get_list("set-cookie")
    )
    assert owner_browser.http.cookies.get("baton_refresh") == refresh
    again = await owner_browser.get("/settings/members")
    assert again.status_code == 200


async def test_a_used_refresh_cookie_ends_the_session(
    create_browser: BrowserFactory, owner: Account
) -> None:
    browser = await create_browser(owner)
    browser.set_cookie("baton_access", EXPIRED)
    old_refresh = browser.http.cookies.get("baton_refresh")
    assert (await browser.get("/settings/members")).status_code == 200  # rotates
    thief = await create_browser()
    thief.set_cookie("baton_refresh", old_refresh or "")
    # Within the grace window the parked pair would be handed out; outside it, reuse is
    # detected. Drop the parked pair to stand for a thief who comes back later.
    redis = browser.http._transport.app.state.redis  # type: ignore[attr-defined]
    await redis.delete(keys.web_session_rotation(hash_secret(old_refresh or "")))
    stolen = await thief.get("/settings/members")
    assert stolen.status_code == 303
    # Reuse revoked the whole family: the legitimate browser's rotated session ended too.
    browser.set_cookie("baton_access", EXPIRED)
    assert (await browser.get("/settings/members")).status_code == 303

"""CSRF tokens are bound to the browser's cookie *and* its session: cookie tossing fails.

An attacker controlling a sibling host can plant cookies in the victim's browser. With a
plain double-submit token they would plant their own CSRF cookie and submit its value
(or their own valid cookie/token pair). Here the token is an HMAC over the cookie and the
logged-in user under a server key, so neither works in the victim's session.
"""

from __future__ import annotations

from httpx import AsyncClient

from backend.web.csrf import CSRF_COOKIE
from tests.fixtures.factories import Account
from tests.web.helpers import BrowserFactory

TOKENS = "/settings/tokens"


async def token_names(client: AsyncClient, account: Account) -> list[str]:
    response = await client.get("/api/v1/tokens", headers=account.headers)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()]


async def test_an_attackers_own_valid_pair_tossed_into_the_victims_browser_is_refused(
    client: AsyncClient, owner: Account, stranger: Account, create_browser: BrowserFactory
) -> None:
    attacker = await create_browser(stranger)
    await attacker.get(TOKENS)
    tossed_cookie = attacker.http.cookies[CSRF_COOKIE]
    tossed_token = attacker.csrf
    # The pair is valid - in the attacker's own session.
    own = await attacker.post(TOKENS, {"name": "attacker-own", "role": "viewer"})
    assert own.status_code == 201, own.text

    victim = await create_browser(owner)
    victim.set_cookie(CSRF_COOKIE, tossed_cookie)
    planted = await victim.http.post(
        TOKENS, data={"csrf_token": tossed_token, "name": "planted", "role": "owner"}
    )
    assert planted.status_code == 403 and "csrf_failed" in planted.text
    htmx = await victim.http.post(
        TOKENS,
        data={"name": "planted", "role": "owner"},
        headers={"X-CSRF-Token": tossed_token, "HX-Request": "true"},
    )
    assert htmx.status_code == 403
    assert "planted" not in await token_names(client, owner)

    # The victim's own pages keep working: the next page renders a token for their session.
    await victim.get(TOKENS)
    mine = await victim.post(TOKENS, {"name": "victim-own", "role": "viewer"})
    assert mine.status_code == 201, mine.text
    assert await token_names(client, owner) == ["victim-own"]


async def test_the_cookie_value_itself_is_no_token(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    """The old double-submit scheme (submit what the cookie holds) is refused."""
    browser = await create_browser(owner)
    browser.set_cookie(CSRF_COOKIE, "t" * 43)
    response = await browser.http.post(
        TOKENS, data={"csrf_token": "t" * 43, "name": "double-submit", "role": "viewer"}
    )
    assert response.status_code == 403 and "csrf_failed" in response.text
    assert await token_names(client, owner) == []


async def test_a_token_from_before_login_is_refused_after_it(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    """A token bound to no session (e.g. learned from the public login page) does not
    carry over into the logged-in session."""
    anonymous_browser = await create_browser()
    anonymous_token = anonymous_browser.csrf
    login = await anonymous_browser.post(
        "/login", {"email": owner.email, "password": owner.password}
    )
    assert login.status_code == 303
    stale = await anonymous_browser.http.post(
        TOKENS, data={"csrf_token": anonymous_token, "name": "stale", "role": "viewer"}
    )
    assert stale.status_code == 403
    await anonymous_browser.get(TOKENS)
    fresh = await anonymous_browser.post(TOKENS, {"name": "fresh", "role": "viewer"})
    assert fresh.status_code == 201, fresh.text
    assert await token_names(client, owner) == ["fresh"]

"""The per-address login throttle at the limits Baton ships with.

The session's settings raise the per-address limit (every test client shares one address),
so this module builds an app with the production defaults and sends its requests from an
address of its own.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis

from backend.app import create_app
from backend.core.settings import Settings
from kernel.wire import keys
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, unique_email

LOGIN = "/api/v1/auth/login"
PER_IP = Settings.model_fields["login_max_failures_per_ip"].default
PER_ACCOUNT = Settings.model_fields["login_max_failures_per_account"].default


def test_the_shipped_limits_are_what_this_module_assumes() -> None:
    assert isinstance(PER_IP, int) and isinstance(PER_ACCOUNT, int)
    assert PER_IP > PER_ACCOUNT > 1  # one address can fail on several accounts first


@pytest.fixture
async def shipped(settings: Settings) -> AsyncIterator[Settings]:
    """The test settings with the login limits as shipped."""
    yield settings.model_copy(
        update={
            "login_max_failures_per_ip": PER_IP,
            "login_max_failures_per_account": PER_ACCOUNT,
        }
    )


async def client_from(app: object, address: str) -> AsyncClient:
    transport = ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return AsyncClient(transport=transport, base_url="http://baton.test")


async def test_one_address_is_refused_after_the_shipped_number_of_failures(
    shipped: Settings, owner: Account, redis: Redis
) -> None:
    address = f"198.51.100.{random.randint(1, 254)}"  # its own counter, not the suite's
    other_address = "192.0.2.77"
    await redis.delete(keys.login_failures_ip(address), keys.login_failures_ip(other_address))
    app = create_app(shipped)
    async with app.router.lifespan_context(app):
        attacker = await client_from(app, address)
        bystander = await client_from(app, other_address)
        try:
            # Spread over fresh addresses (below the per-account limit each): only the
            # per-address counter can stop this.
            victims = [unique_email("victim") for _ in range(PER_IP // (PER_ACCOUNT - 1) + 1)]
            for attempt in range(PER_IP):
                email = victims[attempt // (PER_ACCOUNT - 1)]
                failed = await attacker.post(LOGIN, json={"email": email, "password": "guess!"})
                assert_error(failed, 401, "invalid_credentials")
            assert int(await redis.get(keys.login_failures_ip(address)) or 0) == PER_IP

            # Now even the right password of an account never tried from here is refused ...
            right = {"email": owner.email, "password": owner.password}
            blocked = await attacker.post(LOGIN, json=right)
            assert_error(blocked, 429, "rate_limited")
            assert 1 <= int(blocked.headers["Retry-After"]) <= shipped.login_failure_window_seconds
            # ... while another address logs in to it as usual.
            allowed = await bystander.post(LOGIN, json=right)
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["access_token"]
        finally:
            await attacker.aclose()
            await bystander.aclose()
            await redis.delete(keys.login_failures_ip(address))
            await redis.delete(keys.login_failures_ip(other_address))

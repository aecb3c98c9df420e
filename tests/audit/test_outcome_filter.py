"""GET /api/v1/audit?outcome=: only successes, or only failures (e.g. refused logins)."""

from __future__ import annotations

from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member

AUDIT = "/api/v1/audit"


async def test_outcome_filter(client: AsyncClient, owner: Account) -> None:
    await create_member(client, owner, "viewer")
    for _ in range(2):
        await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": "wrong-password!"}
        )
    everything = (await client.get(AUDIT, headers=owner.headers)).json()["items"]
    failures = await client.get(AUDIT, params={"outcome": "failure"}, headers=owner.headers)
    assert failures.status_code == 200, failures.text
    failed = failures.json()["items"]
    assert [e["action"] for e in failed] == ["auth.login.failed"] * 2
    successes = await client.get(AUDIT, params={"outcome": "success"}, headers=owner.headers)
    succeeded = successes.json()["items"]
    assert succeeded and all(e["outcome"] == "success" for e in succeeded)
    assert len(failed) + len(succeeded) == len(everything)
    both = await client.get(
        AUDIT, params={"outcome": "success", "action": "member"}, headers=owner.headers
    )
    assert {e["action"] for e in both.json()["items"]} == {"member.added"}


async def test_unknown_outcome_is_422(client: AsyncClient, owner: Account) -> None:
    for value in ("maybe", "", "FAILURE"):
        response = await client.get(AUDIT, params={"outcome": value}, headers=owner.headers)
        assert_error(response, 422, "validation_failed")
        assert response.json()["error"]["code"] == "validation_failed"

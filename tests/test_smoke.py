from httpx import AsyncClient

from tests.fixtures.factories import Account


async def test_signup_and_me(client: AsyncClient, owner: Account) -> None:
    response = await client.get("/api/v1/me", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "owner"

"""What the notification tests share: the API paths, and channels and rules made through
the API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.notify.receiver import Receiver
from tests.secrets.helpers import create_secret, secret_name

CHANNELS = "/api/v1/notification-channels"
RULES = "/api/v1/notification-rules"
DELIVERIES = "/api/v1/notification-deliveries"


async def webhook_channel(client: AsyncClient, owner: Account, receiver: Receiver) -> str:
    url, signing = secret_name("HOOK_URL"), secret_name("HOOK_KEY")
    await create_secret(client, owner, url, receiver.url)
    await create_secret(client, owner, signing, receiver.secret)
    body = {"name": "ops hook", "kind": "webhook", "url_secret": url, "signing_secret": signing}
    response = await client.post(CHANNELS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def email_channel(client: AsyncClient, owner: Account, port: int, to: str) -> str:
    body = {
        "name": "ops mail", "kind": "email", "to": [to], "smtp_host": "127.0.0.1",
        "smtp_port": port, "smtp_starttls": False, "mail_from": "baton@example.com",
    }  # fmt: skip
    response = await client.post(CHANNELS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def rule(client: AsyncClient, owner: Account, channel: str, **body: Any) -> None:
    response = await client.post(RULES, json={"channel_id": channel, **body}, headers=owner.headers)
    assert response.status_code == 201, response.text

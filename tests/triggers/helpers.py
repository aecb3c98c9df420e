"""Factories for webhook endpoints, through the public API."""

from __future__ import annotations

import json
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account


async def create_webhook(
    client: AsyncClient, account: Account, job_id: str, **body: Any
) -> dict[str, Any]:
    body.setdefault("name", "hook")
    response = await client.post(
        f"/api/v1/jobs/{job_id}/webhooks", json=body, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliveries(client: AsyncClient, account: Account, endpoint_id: str) -> list[dict]:
    response = await client.get(
        f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=account.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()

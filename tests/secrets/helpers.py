"""Factories for secrets, through the public API."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account

SECRETS = "/api/v1/secrets"
QUEUE = "secrets"  # read by the secrets worker of conftest.py alone


def secret_name(prefix: str = "S") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12].upper()}"


def secret_value() -> str:
    """A value unlikely to appear anywhere by chance, so searches for it mean something."""
    return f"sv-{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}"


async def create_secret(
    client: AsyncClient, account: Account, name: str, value: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        SECRETS, json={"name": name, "value": value, **extra}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())

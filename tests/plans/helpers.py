"""Plans and plan assignment through the admin API, shared by the plans tests."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account

PLANS = "/api/v1/plans"


def plan_url(name: str) -> str:
    return f"/api/v1/admin/plans/{name}"


def tenant_plan_url(tenant_id: uuid.UUID | str) -> str:
    return f"/api/v1/admin/tenants/{tenant_id}/plan"


def unique_plan() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def save_plan(client: AsyncClient, admin: Account, **limits: Any) -> str:
    """A new plan of its own (so no other test's tenants share it) with ``limits``."""
    name = unique_plan()
    response = await client.put(
        plan_url(name), json={"title": name, "limits": limits}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return name


async def put_on_plan(client: AsyncClient, admin: Account, account: Account, plan: str) -> None:
    response = await client.put(
        tenant_plan_url(account.tenant_id), json={"plan": plan}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == plan


async def plan_for(client: AsyncClient, admin: Account, account: Account, **limits: Any) -> str:
    """Put ``account``'s tenant on a new plan with ``limits``."""
    name = await save_plan(client, admin, **limits)
    await put_on_plan(client, admin, account, name)
    return name

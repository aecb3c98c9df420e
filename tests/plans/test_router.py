"""The plan catalogue and plan assignment: who may read, who may write, bad input."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.plans.catalog import DEFAULT_PLANS
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.plans.helpers import PLANS, plan_url, save_plan, tenant_plan_url, unique_plan

BODY = {"title": "Test", "limits": {"runs_per_month": 10}}


async def test_catalogue_lists_the_seeded_plans(client: AsyncClient, owner: Account) -> None:
    viewer = await create_member(client, owner, "viewer")
    response = await client.get(PLANS, headers=viewer.headers)
    assert response.status_code == 200, response.text
    names = [p["name"] for p in response.json()]
    # In display order (the tests' own plans sit at position 0 beside free).
    assert [n for n in names if n in DEFAULT_PLANS] == ["free", "team", "business", "enterprise"]
    enterprise = next(p for p in response.json() if p["name"] == "enterprise")
    assert enterprise["limits"]["runs_per_month"] is None  # unlimited


async def test_catalogue_anonymous(client: AsyncClient) -> None:
    assert_error(await client.get(PLANS), 401, "unauthenticated")


async def test_save_plan_anonymous(client: AsyncClient) -> None:
    assert_error(await client.put(plan_url(unique_plan()), json=BODY), 401, "unauthenticated")


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
async def test_save_plan_needs_a_platform_admin(
    client: AsyncClient, owner: Account, role: str
) -> None:
    account = owner if role == "owner" else await create_member(client, owner, role)
    response = await client.put(plan_url(unique_plan()), json=BODY, headers=account.headers)
    assert_error(response, 403, "forbidden")


async def test_save_plan_creates_then_replaces(client: AsyncClient, superuser: Account) -> None:
    name = unique_plan()
    created = await client.put(plan_url(name), json=BODY, headers=superuser.headers)
    assert created.status_code == 201, created.text
    assert created.json()["limits"]["runs_per_month"] == 10
    body = {"title": "Renamed", "position": 9, "limits": {"members": 2}}
    replaced = await client.put(plan_url(name), json=body, headers=superuser.headers)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["title"] == "Renamed"
    assert replaced.json()["limits"]["runs_per_month"] is None
    assert replaced.json()["limits"]["members"] == 2


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("Bad Name", BODY),
        ("x" * 21, BODY),
        ("ok", {"title": "t", "limits": {"runs_per_month": -1}}),
        ("ok", {"title": "t", "limits": {"unknown_limit": 1}}),
        ("ok", {"title": "", "limits": {}}),
        ("ok", {"limits": {}}),
    ],
)
async def test_save_plan_bad_input(
    client: AsyncClient, superuser: Account, name: str, body: dict
) -> None:
    response = await client.put(plan_url(name), json=body, headers=superuser.headers)
    assert_error(response, 422, "validation_failed")


async def test_set_tenant_plan_anonymous(client: AsyncClient, owner: Account) -> None:
    response = await client.put(tenant_plan_url(owner.tenant_id), json={"plan": "team"})
    assert_error(response, 401, "unauthenticated")


async def test_set_tenant_plan_needs_a_platform_admin(client: AsyncClient, owner: Account) -> None:
    response = await client.put(
        tenant_plan_url(owner.tenant_id), json={"plan": "enterprise"}, headers=owner.headers
    )
    assert_error(response, 403, "forbidden")


async def test_set_tenant_plan_unknown_tenant_or_plan(
    client: AsyncClient, superuser: Account, owner: Account
) -> None:
    unknown_tenant = await client.put(
        tenant_plan_url(uuid.uuid4()), json={"plan": "team"}, headers=superuser.headers
    )
    assert_error(unknown_tenant, 404, "not_found")
    unknown_plan = await client.put(
        tenant_plan_url(owner.tenant_id), json={"plan": unique_plan()}, headers=superuser.headers
    )
    assert_error(unknown_plan, 404, "not_found")
    bad = await client.put(
        tenant_plan_url(owner.tenant_id), json={"plan": "NOT OK"}, headers=superuser.headers
    )
    assert_error(bad, 422, "validation_failed")


async def test_set_tenant_plan_is_audited_in_the_tenant(
    client: AsyncClient, superuser: Account, owner: Account, owner_engine: AsyncEngine
) -> None:
    name = await save_plan(client, superuser, members=5)
    response = await client.put(
        tenant_plan_url(owner.tenant_id), json={"plan": name}, headers=superuser.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == name
    async with owner_engine.connect() as conn:
        details = (
            await conn.execute(
                text(
                    "SELECT details FROM audit_events WHERE tenant_id = :t"
                    " AND action = 'tenant.plan_changed'"
                ),
                {"t": owner.tenant_id},
            )
        ).scalar_one()
    assert details == {"from": "free", "to": name, "by": "platform_admin"}


def test_the_migration_seeds_the_catalogue() -> None:
    """The catalogue's numbers and the seed of migration 0011 say the same."""
    path = Path(__file__).resolve().parents[2] / "migrations/versions/0012_plans.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {name: limits for name, (_, _, limits) in module.SEED.items()} == DEFAULT_PLANS

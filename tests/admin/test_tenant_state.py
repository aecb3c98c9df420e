"""POST /api/v1/admin/tenants/{id}/suspend and /resume: who may, what a suspension refuses,
what resuming restores, and the audit trail in the suspended tenant's own log."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.admin.helpers import TENANTS, resume_url, suspend_url
from tests.audit.helpers import audit_rows, verify
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    Account,
    bearer,
    create_api_token,
    create_member,
)


async def test_anonymous_and_tenant_roles_are_refused(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    for url in (suspend_url(stranger.tenant_id), resume_url(stranger.tenant_id)):
        assert_error(await client.post(url), 401, "unauthenticated")
        for role in ("owner", "admin"):
            account = owner if role == "owner" else await create_member(client, owner, role)
            assert_error(await client.post(url, headers=account.headers), 403, "forbidden")
    me = await client.get("/api/v1/me", headers=stranger.headers)
    assert me.json()["tenant"]["status"] == "active"


async def test_superusers_api_token_may_not_suspend(
    client: AsyncClient, superuser: Account, stranger: Account
) -> None:
    token = (await create_api_token(client, superuser, "owner"))["token"]
    response = await client.post(suspend_url(stranger.tenant_id), headers=bearer(token))
    assert_error(response, 403, "forbidden")


async def test_unknown_and_malformed_tenant_ids(client: AsyncClient, superuser: Account) -> None:
    for url in (suspend_url(uuid.uuid4()), resume_url(uuid.uuid4())):
        assert_error(await client.post(url, headers=superuser.headers), 404, "not_found")
    for url in (suspend_url("not-a-uuid"), resume_url("1234")):
        assert_error(await client.post(url, headers=superuser.headers), 422, "validation_failed")


async def test_a_superuser_cannot_suspend_its_own_tenant(
    client: AsyncClient, superuser: Account
) -> None:
    response = await client.post(suspend_url(superuser.tenant_id), headers=superuser.headers)
    assert_error(response, 409, "conflict")
    me = await client.get("/api/v1/me", headers=superuser.headers)
    assert me.json()["tenant"]["status"] == "active"


async def test_suspension_refuses_every_credential_and_resuming_restores_them(
    client: AsyncClient, superuser: Account, owner: Account
) -> None:
    viewer = await create_member(client, owner, "viewer")
    token = (await create_api_token(client, owner, "editor"))["token"]
    response = await client.post(suspend_url(owner.tenant_id), headers=superuser.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["slug"], body["status"]) == (
        str(owner.tenant_id),
        owner.tenant_slug,
        "suspended",
    )

    for headers in (owner.headers, viewer.headers, bearer(token)):
        refused = await client.get("/api/v1/me", headers=headers)
        assert_error(refused, 403, "tenant_suspended")
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert_error(login, 403, "tenant_suspended")
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": viewer.refresh_token}
    )
    assert_error(refresh, 403, "tenant_suspended")
    listed = await client.get(TENANTS, headers=superuser.headers)
    states = {t["id"]: t["status"] for t in listed.json()["items"]}
    assert states[str(owner.tenant_id)] == "suspended"

    resumed = await client.post(resume_url(owner.tenant_id), headers=superuser.headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    for headers in (owner.headers, viewer.headers, bearer(token)):
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert login.status_code == 200, login.text


async def test_state_changes_are_audited_in_the_tenants_own_log(
    app: FastAPI,
    client: AsyncClient,
    superuser: Account,
    owner: Account,
    owner_engine: AsyncEngine,
) -> None:
    await client.post(suspend_url(owner.tenant_id), headers=superuser.headers)
    await client.post(resume_url(owner.tenant_id), headers=superuser.headers)
    response = await client.get("/api/v1/audit", params={"action": "tenant"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    events = [e for e in response.json()["items"] if e["action"] != "tenant.created"]
    assert [e["action"] for e in events] == ["tenant.resumed", "tenant.suspended"]
    for event in events:
        assert (event["actor_type"], event["actor_id"], event["actor_label"]) == (
            "user",
            str(superuser.user_id),
            superuser.email,
        )
        assert (event["target_type"], event["target_id"]) == ("tenant", str(owner.tenant_id))
        assert event["ip"] == "203.0.113.7"
    assert events[1]["details"] == {"from": "active", "to": "suspended", "by": "platform_admin"}
    # Nothing was written to the administrator's own tenant, and both chains hold.
    own = await audit_rows(owner_engine, superuser.tenant_id)
    assert not [r for r in own if r["action"] in {"tenant.suspended", "tenant.resumed"}]
    for tenant_id in (owner.tenant_id, superuser.tenant_id):
        assert (await verify(app, tenant_id)).intact


async def test_suspend_and_resume_are_idempotent(
    client: AsyncClient, superuser: Account, owner: Account, owner_engine: AsyncEngine
) -> None:
    for _ in range(2):
        response = await client.post(suspend_url(owner.tenant_id), headers=superuser.headers)
        assert response.json()["status"] == "suspended"
    for _ in range(2):
        response = await client.post(resume_url(owner.tenant_id), headers=superuser.headers)
        assert response.json()["status"] == "active"
    actions = [r["action"] for r in await audit_rows(owner_engine, owner.tenant_id)]
    assert actions.count("tenant.suspended") == 1
    assert actions.count("tenant.resumed") == 1


async def test_resuming_an_active_tenant_changes_nothing(
    client: AsyncClient, superuser: Account, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await audit_rows(owner_engine, owner.tenant_id)
    response = await client.post(resume_url(owner.tenant_id), headers=superuser.headers)
    assert response.json()["status"] == "active"
    assert await audit_rows(owner_engine, owner.tenant_id) == before

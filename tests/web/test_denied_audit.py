"""A denied dashboard request (a viewer posting a form it may not) is audited like an API
call: ``request.denied`` in the viewer's tenant, the chain intact."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import audit_rows, head_seq, rows_after, verify
from tests.fixtures.factories import Account, create_member
from tests.web.helpers import BrowserFactory


async def test_a_denied_dashboard_request_is_audited(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    create_browser: BrowserFactory,
    app: FastAPI,
) -> None:
    viewer = await create_member(client, owner, "viewer")
    browser = await create_browser(viewer)
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await browser.post("/settings/tokens", {"name": "x", "role": "viewer"})
    assert response.status_code == 403
    after = await rows_after(owner_engine, owner.tenant_id, before)
    [event] = [row for row in after if row["action"] == "request.denied"]
    assert event["actor_id"] == str(viewer.user_id)
    assert event["details"]["path"] == "/settings/tokens"
    assert (await verify(app, owner.tenant_id)).intact
    rows = await audit_rows(owner_engine, owner.tenant_id)
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))

"""The runs list says how far back history goes: the plan's retention and the instant
before which runs are removed (none on an installation that keeps history forever)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.plans.helpers import plan_for


async def test_runs_list_names_the_plans_retention(
    billed: AsyncClient, superuser: Account, owner: Account
) -> None:
    await plan_for(billed, superuser, owner, log_retention_days=7)
    before = datetime.now(UTC)
    response = await billed.get("/api/v1/runs", headers=owner.headers)
    after = datetime.now(UTC)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["retention_days"] == 7
    since = datetime.fromisoformat(body["history_since"])
    assert before - timedelta(days=7) <= since <= after - timedelta(days=7)


async def test_runs_list_without_retention_keeps_history(
    client: AsyncClient, owner: Account
) -> None:
    body = (await client.get("/api/v1/runs", headers=owner.headers)).json()
    assert (body["retention_days"], body["history_since"]) == (None, None)

"""Instantiating and running templates, shared by the template tests."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient, Response

from tests.fixtures.factories import Account
from tests.runs.factories import trigger, wait_for_run

TEMPLATES = "/api/v1/templates"


def name() -> str:
    return f"tpl-{uuid.uuid4().hex[:8]}"


async def instantiate(
    client: AsyncClient, account: Account, template: str, params: dict[str, Any], **extra: Any
) -> Response:
    return await client.post(
        f"{TEMPLATES}/{template}/instantiate",
        json={"job_name": extra.pop("job_name", name()), "params": params, **extra},
        headers=account.headers,
    )


async def run_template(
    client: AsyncClient, owner: Account, template: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Instantiate ``template`` into a new job, trigger it and wait for the run to finish."""
    created = await instantiate(client, owner, template, params)
    assert created.status_code == 201, created.text
    run = await trigger(client, owner, created.json()["job"]["id"])
    return await wait_for_run(client, owner, run["id"], timeout=60)

"""``quota_cancelled`` notifications for runs a plan limit refused before they existed: a
scheduled fire past the runs per month, an inbound webhook delivery and a job-to-job
trigger refused with ``quota_exceeded``. Each refusal is written to the reactor's outbox in
the transaction that records it and delivered by the reactor like any notification (real
SMTP server and signature-checking receiver in this process)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.db import commit
from backend.core.models import utcnow
from backend.schedules.firing import fire_due
from backend.triggers.reactor import Reactor
from tests.accounts.smtp import Inbox
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.notify.helpers import DELIVERIES, email_channel, rule, webhook_channel
from tests.notify.receiver import Receiver
from tests.plans.helpers import plan_for
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from tests.triggers.helpers import create_webhook, deliveries

EVERY_SECOND = {"cron": "* * * * * *", "misfire": "fire_all", "max_catchup": 10}


async def _notifications(client: AsyncClient, owner: Account) -> list[dict[str, Any]]:
    response = await client.get(DELIVERIES, headers=owner.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def _settled(items: list[dict[str, Any]], count: int) -> bool:
    return len(items) == count and not any(d["status"] == "pending" for d in items)


async def _fire_late(
    hosted_app: FastAPI, owner_engine: AsyncEngine, owner: Account, job_id: str,
    ahead: float = 0,
) -> None:  # fmt: skip
    """One scheduler pass for the owner's tenant, the schedule last looked at 4 s ago; the
    pass's clock ``ahead`` seconds past now."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE schedules SET checked_until = now() - interval '4 seconds', "
                "next_due_at = now() - interval '4 seconds' WHERE job_id = :job"
            ),
            {"job": job_id},
        )
    async with hosted_app.state.sessionmaker() as session:
        await fire_due(
            session, hosted_app.state.redis, owner.tenant_id, fence=1,
            settings=hosted_app.state.settings, now=utcnow() + timedelta(seconds=ahead),
        )  # fmt: skip
        await commit(session)


async def test_scheduled_fires_past_the_quota_send_one_mail(
    client: AsyncClient, hosted: AsyncClient, hosted_app: FastAPI, superuser: Account,
    owner: Account, owner_engine: AsyncEngine, running_reactor: Reactor, inbox: Inbox,
    smtp_port: int,
) -> None:  # fmt: skip
    await plan_for(hosted, superuser, owner, runs_per_month=1)
    job = await create_job(hosted, owner, [python_task("a")], schedule=EVERY_SECOND)
    await trigger(hosted, owner, job["id"], delay_seconds=3600)  # the month's one run
    to = f"quota-{uuid.uuid4().hex[:8]}@example.com"
    mail = await email_channel(client, owner, smtp_port, to)
    await rule(client, owner, mail, job_id=job["id"], events=["quota_cancelled"])
    await rule(client, owner, mail, events=["quota_cancelled", "failure"])  # same channel

    await _fire_late(hosted_app, owner_engine, owner, job["id"])
    [message] = await eventually(lambda: inbox.to(to), what="the quota mail")
    assert " ".join(message["Subject"].split()) == (  # unfolded
        f"[Baton] Job {job['name']}: a scheduled run was refused by the plan limit runs_per_month"
    )
    raw = message.get_payload(decode=True)
    assert isinstance(raw, bytes)
    body = raw.decode()
    payload = json.loads(body[body.index("{") :])
    assert payload["event"] == "run.refused_by_quota" and payload["run"] is None
    assert payload["job"] == {"id": job["id"], "name": job["name"]}
    refusal = payload["refusal"]
    assert refusal["source"] == "schedule" and refusal["limit"] == "runs_per_month"
    assert refusal["reason"].startswith("quota_exceeded: runs_per_month limit of 1 reached")
    assert refusal["skipped"] >= 3 and len(refusal["scheduled_for"]) == refusal["skipped"]
    [sent] = await eventually(
        lambda: _notifications(client, owner), lambda items: _settled(items, 1),
        what="one notification, sent",
    )  # fmt: skip
    assert (sent["event"], sent["status"], sent["run_id"]) == ("quota_cancelled", "sent", None)

    # A later pass skips later fires: queued again within the throttle window, not sent.
    await _fire_late(hosted_app, owner_engine, owner, job["id"], ahead=5)
    items = await eventually(
        lambda: _notifications(client, owner), lambda found: _settled(found, 2),
        what="the second refusal logged",
    )  # fmt: skip
    assert sorted(d["status"] for d in items) == ["sent", "throttled"]
    assert len(inbox.to(to)) == 1
    paused = await hosted.post(f"/api/v1/jobs/{job['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200, paused.text


async def test_a_webhook_refused_by_quota_sends_one_signed_post(
    client: AsyncClient, hosted: AsyncClient, superuser: Account, owner: Account,
    running_reactor: Reactor, receiver: Receiver,
) -> None:  # fmt: skip
    await plan_for(hosted, superuser, owner, runs_per_month=1)
    job = await create_job(hosted, owner, [python_task("a")])
    hook = await create_webhook(client, owner, job["id"], name="deploy-hook")
    channel = await webhook_channel(client, owner, receiver)
    await rule(client, owner, channel, events=["quota_cancelled"])  # every job

    assert (await hosted.post(hook["url"], json={"n": 1})).status_code == 201
    # Refused for something else than a plan limit: recorded, not a quota notification.
    not_json = await hosted.post(hook["url"], content=b"{nope")
    assert_error(not_json, 400, "bad_request")
    refused = await hosted.post(hook["url"], json={"n": 2})
    assert_error(refused, 402, "quota_exceeded")

    [post] = await eventually(lambda: receiver.received, what="the quota notification")
    assert post["verified"] is True and post["event"] == "run.refused_by_quota"
    body = post["body"]
    assert body["event"] == "run.refused_by_quota" and body["run"] is None
    assert body["job"] == {"id": job["id"], "name": job["name"]}
    refusal = body["refusal"]
    recorded = await deliveries(client, owner, hook["id"])
    assert refusal["source"] == "webhook" and refusal["limit"] == "runs_per_month"
    assert refusal["webhook_id"] == hook["id"] and refusal["webhook"] == "deploy-hook"
    assert refusal["status_code"] == 402
    assert refusal["reason"] == "Your plan's limit 'runs_per_month' is reached (1 of 1)"
    assert sorted((d["outcome"], d["status_code"]) for d in recorded) == [
        ("accepted", 201), ("refused", 400), ("refused", 402),
    ]  # fmt: skip
    [quota] = [d for d in recorded if d["status_code"] == 402]
    assert refusal["webhook_delivery_id"] == quota["id"]
    [sent] = await eventually(
        lambda: _notifications(client, owner), lambda items: _settled(items, 1),
        what="one notification, sent",
    )  # fmt: skip
    assert sent["status"] == "sent" and post["delivery"] == sent["id"]
    assert len(receiver.received) == 1


async def test_a_job_trigger_refused_by_quota_is_notified(
    client: AsyncClient, hosted: AsyncClient, superuser: Account, owner: Account,
    running_worker: object, running_reactor: Reactor, receiver: Receiver,
) -> None:  # fmt: skip
    await plan_for(hosted, superuser, owner, runs_per_month=1)
    upstream = await create_job(client, owner, [python_task("a")])
    downstream = await create_job(
        client, owner, [python_task("b")],
        triggers=[{"on": "run_finished", "job": upstream["name"]}],
    )  # fmt: skip
    channel = await webhook_channel(client, owner, receiver)
    await rule(client, owner, channel, job_id=downstream["id"], events=["quota_cancelled"])
    # The reactor reads the plan from the ``plans`` table, as a hosted installation does.
    on_prem = running_reactor.settings
    running_reactor.settings = on_prem.model_copy(update={"billing": "manual"})
    try:
        run = await trigger(client, owner, upstream["id"])  # the month's one run
        assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
        [post] = await eventually(lambda: receiver.received, what="the quota notification")
    finally:
        running_reactor.settings = on_prem
    assert post["verified"] and post["body"]["job"]["id"] == downstream["id"]
    refusal = post["body"]["refusal"]
    assert refusal["source"] == "upstream" and refusal["limit"] == "runs_per_month"
    assert refusal["upstream_run_id"] == run["id"]
    assert refusal["upstream_job"] == upstream["name"]
    runs = await client.get(f"/api/v1/runs?job_id={downstream['id']}", headers=owner.headers)
    assert runs.json()["items"] == []

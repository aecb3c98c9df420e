"""Notifications end to end with real servers in this process: a failing run sends one
mail (aiosmtpd) and one signed POST (a receiver that checks the signature); a flapping job
is throttled; a recovery is announced; failures are retried with backoff; the egress guard
refuses private addresses unless allowed; the test button; the API's access rules."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.settings import Settings
from tests.accounts.smtp import Inbox
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.fixtures.waiting import eventually
from tests.notify.helpers import (
    CHANNELS,
    DELIVERIES,
    RULES,
    email_channel,
    rule,
    webhook_channel,
)
from tests.notify.receiver import Receiver
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from tests.secrets.helpers import create_secret, secret_name


async def _flaky_job(client: AsyncClient, owner: Account) -> dict[str, Any]:
    """A job whose run fails when run with ``{"fail": true}`` and succeeds otherwise."""
    task = python_task("maybe", "worker.builtins:fail", when="params.fail")
    return await create_job(client, owner, [task], params={"fail": False})


async def _deliveries(client: AsyncClient, owner: Account) -> list[dict[str, Any]]:
    response = await client.get(DELIVERIES, headers=owner.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


async def _run(client: AsyncClient, owner: Account, job: dict[str, Any], fail: bool) -> None:
    run = await trigger(client, owner, job["id"], params={"fail": fail})
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == ("failed" if fail else "succeeded"), done


async def test_a_failing_run_sends_one_mail_and_one_signed_post(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object,
    inbox: Inbox, smtp_port: int, receiver: Receiver,
) -> None:  # fmt: skip
    job = await _flaky_job(client, owner)
    to = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    mail = await email_channel(client, owner, smtp_port, to)
    hook = await webhook_channel(client, owner, receiver)
    await rule(client, owner, mail, job_id=job["id"], events=["failure"])
    await rule(client, owner, hook, events=["failure", "recovery"])  # every job
    await _run(client, owner, job, fail=True)

    [message] = await eventually(lambda: inbox.to(to), what="the mail")
    assert message["Subject"].startswith(f"[Baton] Job {job['name']}: run")
    assert "failed" in message["Subject"]
    [post] = await eventually(lambda: receiver.received, what="the signed POST")
    assert post["verified"] is True
    assert post["event"] == "run.failed" and post["body"]["event"] == "run.failed"
    assert post["body"]["job"] == {"id": job["id"], "name": job["name"]}
    assert post["body"]["run"]["status"] == "failed"
    sent = await eventually(
        lambda: _deliveries(client, owner),
        lambda items: len(items) == 2 and all(d["status"] == "sent" for d in items),
        what="both deliveries sent",
    )
    assert {d["response_code"] for d in sent} == {200, 250}
    assert post["delivery"] in {d["id"] for d in sent}


async def test_a_flapping_job_is_throttled_and_its_recovery_announced(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object,
    inbox: Inbox, smtp_port: int,
) -> None:  # fmt: skip
    job = await _flaky_job(client, owner)
    to = f"flap-{uuid.uuid4().hex[:8]}@example.com"
    mail = await email_channel(client, owner, smtp_port, to)
    await rule(client, owner, mail, job_id=job["id"], events=["failure", "recovery"])
    for fail in (True, True, True, False):
        await _run(client, owner, job, fail=fail)
    items = await eventually(
        lambda: _deliveries(client, owner),
        lambda found: len(found) == 4 and not any(d["status"] == "pending" for d in found),
        what="four notifications settled",
    )
    assert sorted((d["event"], d["status"]) for d in items) == [
        ("failure", "sent"), ("failure", "throttled"), ("failure", "throttled"),
        ("recovery", "sent"),
    ]  # fmt: skip
    messages = await eventually(lambda: inbox.to(to), lambda m: len(m) == 2, what="two mails")
    assert sorted("recovered" in m["Subject"] for m in messages) == [False, True]


async def test_failed_deliveries_are_retried_with_backoff_and_logged(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object,
    receiver: Receiver,
) -> None:  # fmt: skip
    receiver.statuses.extend([500, 503])
    job = await _flaky_job(client, owner)
    hook = await webhook_channel(client, owner, receiver)
    await rule(client, owner, hook, job_id=job["id"], events=["failure"])
    await _run(client, owner, job, fail=True)
    [delivery] = await eventually(
        lambda: _deliveries(client, owner),
        lambda found: len(found) == 1 and found[0]["status"] == "sent",
        what="the delivery sent on its third attempt",
    )
    assert delivery["attempts"] == 3 and delivery["response_code"] == 200
    assert len(receiver.received) == 3 and all(r["verified"] for r in receiver.received)
    # One delivery id across the retries: a receiver can deduplicate on it.
    assert {r["delivery"] for r in receiver.received} == {delivery["id"]}


async def test_the_test_button_and_the_egress_guard(
    client: AsyncClient, owner: Account, receiver: Receiver, app: FastAPI,
    settings: Settings,
) -> None:  # fmt: skip
    hook = await webhook_channel(client, owner, receiver)
    # By default a loopback address is refused, as an http task's would be: no retry.
    refused = await client.post(f"{CHANNELS}/{hook}/test", headers=owner.headers)
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "failed"
    assert "loopback" in refused.json()["error"] and receiver.received == []
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.1.2.3/x", "file:///etc"):
        name = secret_name("BAD_URL")
        await create_secret(client, owner, name, url)
        channel = await client.post(
            CHANNELS, json={"name": "slack", "kind": "slack", "url_secret": name},
            headers=owner.headers,
        )  # fmt: skip
        tried = await client.post(f"{CHANNELS}/{channel.json()['id']}/test", headers=owner.headers)
        assert tried.json()["status"] == "failed", tried.text
    # Allowed by the operator: the test notification arrives, signed.
    app.state.settings = settings.model_copy(update={"notification_allowlist": ["127.0.0.1"]})
    try:
        sent = await client.post(f"{CHANNELS}/{hook}/test", headers=owner.headers)
        assert sent.json()["status"] == "sent" and sent.json()["response_code"] == 200
        [post] = receiver.received
        assert post["verified"] and post["event"] == "test"
        # A Slack-compatible channel gets {"text": ...}.
        url = secret_name("SLACK_URL")
        await create_secret(client, owner, url, receiver.url)
        slack = await client.post(
            CHANNELS, json={"name": "chat", "kind": "slack", "url_secret": url},
            headers=owner.headers,
        )  # fmt: skip
        tested = await client.post(f"{CHANNELS}/{slack.json()['id']}/test", headers=owner.headers)
        assert tested.json()["status"] == "sent"
        assert receiver.received[-1]["body"] == {"text": "[Baton] Test notification from Baton"}
    finally:
        app.state.settings = settings


async def test_channel_and_rule_access(
    client: AsyncClient, owner: Account, stranger: Account, receiver: Receiver
) -> None:
    hook = await webhook_channel(client, owner, receiver)
    job = await _flaky_job(client, owner)
    created = await client.post(
        RULES, json={"channel_id": hook, "job_id": job["id"], "events": ["failure"]},
        headers=owner.headers,
    )  # fmt: skip
    rule_id = created.json()["id"]
    viewer = await create_member(client, owner, "viewer")
    listed = await client.get(CHANNELS, headers=owner.headers)
    assert [c["id"] for c in listed.json()] == [hook]
    assert receiver.url not in listed.text and receiver.secret not in listed.text
    for method, url, body in (
        ("GET", CHANNELS, None), ("GET", RULES, None), ("GET", DELIVERIES, None),
        ("POST", CHANNELS, {"name": "x", "kind": "slack", "url_secret": "X"}),
        ("POST", f"{CHANNELS}/{hook}/test", None), ("DELETE", f"{CHANNELS}/{hook}", None),
        ("POST", RULES, {"channel_id": hook, "events": ["failure"]}),
        ("DELETE", f"{RULES}/{rule_id}", None),
    ):  # fmt: skip
        assert_error(await client.request(method, url, json=body), 401, "unauthenticated")
        if method != "GET":
            denied = await client.request(method, url, json=body, headers=viewer.headers)
            assert_error(denied, 403, "forbidden")
    for method, url, body in (
        ("DELETE", f"{CHANNELS}/{hook}", None), ("POST", f"{CHANNELS}/{hook}/test", None),
        ("DELETE", f"{RULES}/{rule_id}", None),
        ("POST", RULES, {"channel_id": hook, "events": ["failure"]}),
        ("GET", f"{DELIVERIES}?channel_id={hook}", None),
    ):  # fmt: skip
        other = await client.request(method, url, json=body, headers=stranger.headers)
        assert_error(other, 404, "not_found")
    assert (await client.get(CHANNELS, headers=stranger.headers)).json() == []
    missing = uuid.uuid4()
    for method, url, body in (
        ("DELETE", f"{CHANNELS}/{missing}", None), ("POST", f"{CHANNELS}/{missing}/test", None),
        ("DELETE", f"{RULES}/{missing}", None),
        ("POST", RULES, {"channel_id": str(missing), "events": ["failure"]}),
        ("POST", RULES, {"channel_id": hook, "job_id": str(missing), "events": ["failure"]}),
    ):  # fmt: skip
        response = await client.request(method, url, json=body, headers=owner.headers)
        assert_error(response, 404, "not_found")
    for body in (
        {"name": "x", "kind": "slack"},
        {"name": "x", "kind": "slack", "url_secret": "NO_SUCH_SECRET_ANYWHERE"},
        {"name": "x", "kind": "webhook", "url_secret": "A"},
        {"name": "x", "kind": "email", "to": ["not-an-address"], "smtp_host": "h",
         "mail_from": "a@b.c"},
        {"name": "x", "kind": "email", "to": ["a@b.c"]},
        {"name": "x", "kind": "pager", "url_secret": "A"},
    ):  # fmt: skip
        assert_error(await client.post(CHANNELS, json=body, headers=owner.headers), 422,
                     "validation_failed")  # fmt: skip
    for body in ({"channel_id": hook, "events": []}, {"channel_id": hook, "events": ["sla"]}):
        assert_error(await client.post(RULES, json=body, headers=owner.headers), 422,
                     "validation_failed")  # fmt: skip
    deleted = await client.delete(f"{CHANNELS}/{hook}", headers=owner.headers)
    assert deleted.status_code == 204
    assert (await client.get(RULES, headers=owner.headers)).json() == []


async def test_a_run_failed_by_its_deadline_is_notified(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object,
    receiver: Receiver,
) -> None:  # fmt: skip
    task = python_task("slow", "worker.builtins:sleep", kwargs={"seconds": 30})
    job = await create_job(client, owner, [task], timeout_seconds=1)
    hook = await webhook_channel(client, owner, receiver)
    await rule(client, owner, hook, job_id=job["id"], events=["failure"])
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "failed", done
    [post] = await eventually(lambda: receiver.received, what="the failure notification")
    assert post["verified"] and post["body"]["run"]["id"] == run["id"]
    assert post["body"]["run"]["status"] == "failed"

"""Inbound webhooks: POST /hooks/<token> starts a run with params mapped from the payload;
signatures (GitHub and Stripe schemes, the secret from the tenant's secret store), replays,
idempotency keys and the rate limit; every delivery recorded, refused ones too."""

from __future__ import annotations

import time
import uuid
from typing import Any

from httpx import AsyncClient
from redis.asyncio import Redis

from kernel.signatures import sign_github, sign_stripe
from kernel.wire import keys
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task
from tests.secrets.helpers import create_secret, secret_name, secret_value
from tests.triggers.helpers import create_webhook, deliveries, dumps

PUSH = {
    "after": "0123abcd",
    "repository": {"full_name": "acme/app"},
    "commits": [{"id": "c1"}, {"id": "c2"}],
    "odd key": {"x": 1},
}
MAPPING = {
    "sha": "$.after",
    "repo": "$.repository.full_name",
    "last_commit": "$.commits[-1].id",
    "odd": "$['odd key'].x",
    "absent": "$.nothing.here",
}


async def _job(client: AsyncClient, owner: Account, **extra: Any) -> dict[str, Any]:
    # Runs made here wait an hour: no engine is needed to see what a delivery created.
    return await create_job(
        client, owner, [python_task("noop")], params={"absent": "default"}, **extra
    )


async def _run(client: AsyncClient, owner: Account, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_github_signed_delivery_starts_a_run_with_mapped_params(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    name, shared = secret_name("GH"), secret_value()
    await create_secret(client, owner, name, shared)
    hook = await create_webhook(
        client, owner, job["id"], signature="github", secret_name=name, mapping=MAPPING
    )
    assert hook["url"] == f"/hooks/{hook['token']}"
    body = dumps(PUSH)
    response = await client.post(
        hook["url"], content=body, headers={"X-Hub-Signature-256": sign_github(shared, body)}
    )
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["outcome"] == "accepted"
    run = await _run(client, owner, receipt["run_id"])
    assert run["job_id"] == job["id"]
    assert run["trigger"] == "webhook"
    assert run["params"] == {
        "sha": "0123abcd", "repo": "acme/app", "last_commit": "c2", "odd": 1, "absent": "default",
    }  # fmt: skip
    [delivery] = await deliveries(client, owner, hook["id"])
    assert delivery["outcome"] == "accepted" and delivery["status_code"] == 201
    assert delivery["run_id"] == receipt["run_id"] and delivery["id"] == receipt["delivery_id"]
    # The token is never shown again, nor the shared secret anywhere.
    listed = await client.get(f"/api/v1/jobs/{job['id']}/webhooks", headers=owner.headers)
    assert hook["token"] not in listed.text and shared not in listed.text
    assert [h["id"] for h in listed.json()] == [hook["id"]]


async def test_bad_or_missing_signatures_are_refused_and_recorded(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    name, shared = secret_name("GH"), secret_value()
    await create_secret(client, owner, name, shared)
    hook = await create_webhook(client, owner, job["id"], signature="github", secret_name=name)
    body = dumps(PUSH)
    for headers in (
        {},
        {"X-Hub-Signature-256": sign_github("not the secret", body)},
        {"X-Hub-Signature-256": sign_github(shared, body + b" ")},
        {"X-Hub-Signature-256": "sha1=abc"},
    ):
        response = await client.post(hook["url"], content=body, headers=headers)
        assert_error(response, 401, "invalid_signature")
    recorded = await deliveries(client, owner, hook["id"])
    assert [d["outcome"] for d in recorded] == ["refused"] * 4
    assert {d["status_code"] for d in recorded} == {401}
    assert "does not match" in recorded[1]["reason"]
    assert "missing" in recorded[-1]["reason"]
    runs = await client.get("/api/v1/runs", params={"job_id": job["id"]}, headers=owner.headers)
    assert runs.json()["items"] == []


async def test_stripe_scheme_refuses_replays_and_old_timestamps(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    name, shared = secret_name("ST"), secret_value()
    await create_secret(client, owner, name, shared)
    hook = await create_webhook(
        client, owner, job["id"], signature="stripe", secret_name=name, mapping={"sha": "$.after"}
    )
    body = dumps(PUSH)
    signed = {"Stripe-Signature": sign_stripe(shared, body, int(time.time()))}
    first = await client.post(hook["url"], content=body, headers=signed)
    assert first.status_code == 201, first.text
    replay = await client.post(hook["url"], content=body, headers=signed)
    assert_error(replay, 409, "conflict")
    old = {"Stripe-Signature": sign_stripe(shared, body, int(time.time()) - 3600)}
    assert_error(
        await client.post(hook["url"], content=body, headers=old), 401, "invalid_signature"
    )
    recorded = await deliveries(client, owner, hook["id"])  # newest first
    assert [(d["outcome"], d["status_code"]) for d in recorded] == [
        ("refused", 401), ("refused", 409), ("accepted", 201),
    ]  # fmt: skip
    assert "tolerance" in recorded[0]["reason"] and "Replay" in recorded[1]["reason"]
    # A new timestamp is a new signature: accepted.
    fresh = {"Stripe-Signature": sign_stripe(shared, body, int(time.time()) + 1)}
    assert (await client.post(hook["url"], content=body, headers=fresh)).status_code == 201


async def test_a_signing_secret_that_was_deleted_refuses_deliveries(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    name, shared = secret_name("GH"), secret_value()
    await create_secret(client, owner, name, shared)
    hook = await create_webhook(client, owner, job["id"], signature="github", secret_name=name)
    await client.delete(f"/api/v1/secrets/{name}", headers=owner.headers)
    body = dumps({})
    response = await client.post(
        hook["url"], content=body, headers={"X-Hub-Signature-256": sign_github(shared, body)}
    )
    assert_error(response, 401, "invalid_signature")
    assert "does not exist" in (await deliveries(client, owner, hook["id"]))[0]["reason"]


async def test_an_idempotency_key_answers_the_first_run(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    hook = await create_webhook(client, owner, job["id"])
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await client.post(hook["url"], json={"n": 1}, headers=key)
    again = await client.post(hook["url"], json={"n": 2}, headers=key)
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["outcome"] == "duplicate"
    assert again.json()["run_id"] == first.json()["run_id"]
    github = {"X-GitHub-Delivery": str(uuid.uuid4())}
    third = await client.post(hook["url"], json={}, headers=github)
    fourth = await client.post(hook["url"], json={}, headers=github)
    assert third.json()["run_id"] == fourth.json()["run_id"] != first.json()["run_id"]
    recorded = await deliveries(client, owner, hook["id"])
    assert [d["outcome"] for d in recorded] == ["duplicate", "accepted", "duplicate", "accepted"]
    assert recorded[-1]["idempotency_key"] == key["Idempotency-Key"]
    too_long = {"Idempotency-Key": "k" * 161}
    assert_error(await client.post(hook["url"], json={}, headers=too_long), 400, "bad_request")


async def test_bodies_that_are_not_json_are_refused_and_recorded(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    hook = await create_webhook(client, owner, job["id"])
    response = await client.post(
        hook["url"], content=b"a=1&b=2", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 400, "bad_request")
    empty = await client.post(hook["url"])  # no body: an empty payload
    assert empty.status_code == 201, empty.text
    assert [d["outcome"] for d in await deliveries(client, owner, hook["id"])] == [
        "accepted", "refused",
    ]  # fmt: skip


async def test_the_tenant_rate_limit_refuses_and_records(
    client: AsyncClient, owner: Account, redis: Redis, settings: Any
) -> None:
    job = await _job(client, owner)
    hook = await create_webhook(client, owner, job["id"])
    # The window's counter at its limit, as that many deliveries this minute would leave it.
    for minute in (int(time.time() // 60), int(time.time() // 60) + 1):
        counter = keys.webhook_deliveries(str(owner.tenant_id), minute)
        await redis.set(counter, settings.webhook_deliveries_per_minute, ex=120)
    response = await client.post(hook["url"], json={})
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    [delivery] = await deliveries(client, owner, hook["id"])
    assert delivery["outcome"] == "refused" and delivery["status_code"] == 429


async def test_a_job_that_forbids_concurrent_runs_refuses_and_records(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner, concurrency_policy="forbid")
    hook = await create_webhook(client, owner, job["id"])
    assert (await client.post(hook["url"], json={})).status_code == 201
    assert_error(await client.post(hook["url"], json={}), 409, "conflict")
    recorded = await deliveries(client, owner, hook["id"])
    assert [d["outcome"] for d in recorded] == ["refused", "accepted"]
    assert "forbids concurrent runs" in recorded[0]["reason"]


async def test_unknown_malformed_and_deleted_tokens_are_not_found(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    job = await _job(client, owner)
    hook = await create_webhook(client, owner, job["id"])
    forged = hook["token"].replace(owner.tenant_id.hex, stranger.tenant_id.hex)
    altered = hook["token"][:-1] + ("B" if hook["token"].endswith("A") else "A")
    for token in ("nope", "bwh_zz_" + "x" * 40, forged, altered):
        assert_error(await client.post(f"/hooks/{token}", json={}), 404, "not_found")
    deleted = await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    assert_error(await client.post(hook["url"], json={}), 404, "not_found")
    audit = await client.get("/api/v1/audit", headers=owner.headers)
    actions = [e["action"] for e in audit.json()["items"] if e["action"].startswith("webhook.")]
    assert actions == ["webhook.deleted", "webhook.created"]


async def test_endpoint_management_access(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    job = await _job(client, owner)
    hook = await create_webhook(client, owner, job["id"])
    viewer = await create_member(client, owner, "viewer")
    base = f"/api/v1/jobs/{job['id']}/webhooks"
    calls = (
        ("POST", base, {"name": "x"}),
        ("GET", base, None),
        ("DELETE", f"/api/v1/webhooks/{hook['id']}", None),
        ("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", None),
    )
    for method, url, body in calls:
        assert_error(await client.request(method, url, json=body), 401, "unauthenticated")
        other = await client.request(method, url, json=body, headers=stranger.headers)
        assert_error(other, 404, "not_found")
    for method, url, body in calls:
        response = await client.request(method, url, json=body, headers=viewer.headers)
        if method == "GET":
            assert response.status_code == 200, response.text
        else:
            assert_error(response, 403, "forbidden")
    missing = uuid.uuid4()
    for method, url, body in (
        ("POST", f"/api/v1/jobs/{missing}/webhooks", {"name": "x"}),
        ("GET", f"/api/v1/jobs/{missing}/webhooks", None),
        ("DELETE", f"/api/v1/webhooks/{missing}", None),
        ("GET", f"/api/v1/webhooks/{missing}/deliveries", None),
    ):
        response = await client.request(method, url, json=body, headers=owner.headers)
        assert_error(response, 404, "not_found")


async def test_bad_endpoint_definitions_are_refused_at_save_time(
    client: AsyncClient, owner: Account
) -> None:
    job = await _job(client, owner)
    base = f"/api/v1/jobs/{job['id']}/webhooks"
    for body in (
        {"name": "x", "mapping": {"p": "after"}},
        {"name": "x", "mapping": {"p": "$.a..b"}},
        {"name": "x", "mapping": {"p": "$[x]"}},
        {"name": "x", "mapping": {"p": 3}},
        {"name": "x", "signature": "github"},
        {"name": "x", "secret_name": "SOME_SECRET"},
        {"name": "x", "signature": "md5", "secret_name": "S"},
        {"name": "x", "signature": "github", "secret_name": "NO_SUCH_SECRET_HERE"},
        {"name": "x", "tolerance_seconds": 0},
        {"name": ""},
        {"name": "x", "unknown": 1},
    ):
        response = await client.post(base, json=body, headers=owner.headers)
        assert_error(response, 422, "validation_failed")
    listed = await client.get(base, headers=owner.headers)
    assert listed.json() == []

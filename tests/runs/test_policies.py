"""Concurrency policies, cancellation, batches and reruns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis

from kernel.wire import keys
from tests.fixtures.errors import assert_error
from tests.fixtures.execution import worker_config
from tests.fixtures.factories import Account
from tests.fixtures.streams import settled
from tests.fixtures.waiting import eventually
from tests.runs.factories import (
    create_job,
    python_task,
    run_detail,
    shell_task,
    task_of,
    trigger,
    wait_for_run,
)
from worker.runner import Worker


def waiting(seconds: float = 30) -> dict:
    return python_task("wait", "tests.runs.tasks:wait", kwargs={"seconds": seconds})


async def test_forbid_refuses_a_second_active_run(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [waiting()], concurrency_policy="forbid")
    first = await trigger(client, owner, job["id"])
    response = await client.post(f"/api/v1/jobs/{job['id']}/runs", json={}, headers=owner.headers)
    assert_error(response, 409, "conflict")
    assert response.json()["error"]["details"]["active_run_id"] == first["id"]
    cancelled = await client.post(f"/api/v1/runs/{first['id']}/cancel", headers=owner.headers)
    assert cancelled.status_code == 200
    await trigger(client, owner, job["id"])  # allowed again once nothing is active


async def test_replace_cancels_the_active_run(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [waiting()], concurrency_policy="replace")
    first = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, first["id"], statuses={"running"})
    second = await trigger(client, owner, job["id"])
    old = await wait_for_run(client, owner, first["id"])
    assert old["status"] == "cancelled"
    assert old["reason"] == "replaced by a newer run"
    assert task_of(old, "wait")["status"] == "cancelled"
    new = await wait_for_run(client, owner, second["id"], statuses={"running"})
    assert new["status"] == "running"
    await client.post(f"/api/v1/runs/{second['id']}/cancel", headers=owner.headers)


async def test_allow_runs_side_by_side(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [waiting(0.5)])
    runs = [await trigger(client, owner, job["id"]) for _ in range(3)]
    for run in runs:
        assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"


async def test_cancel_kills_a_running_shell_task(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [shell_task("sleepy", "echo started; sleep 300")])
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"], statuses={"running"})
    response = await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert_error(again, 409, "conflict")
    await eventually(
        lambda: client.get(f"/api/v1/runs/{run['id']}", headers=owner.headers),
        lambda r: (
            (task_of(r.json(), "sleepy")["attempts"] or [{}])[-1].get("status") == "cancelled"
        ),
        what="the worker stopping the attempt",
    )


async def test_an_attempt_cancelled_before_any_worker_read_it_never_runs(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    redis: Redis,
    running_worker: object,
    tmp_path: Path,
) -> None:
    queue = f"unread-{tmp_path.name[-8:]}"  # no worker reads it until the run is cancelled
    ran = tmp_path / "ran"
    job = await create_job(client, owner, [shell_task("late", f"touch {ran}")], queue=queue)
    run = await trigger(client, owner, job["id"])
    await eventually(
        lambda: run_detail(client, owner, run["id"]),
        lambda d: [a["status"] for a in task_of(d, "late")["attempts"]] == ["dispatched"],
        what="the attempt dispatched",
    )
    response = await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert response.status_code == 200
    stream = keys.queue_stream(str(owner.tenant_id), queue)
    late = Worker(app.state.redis, worker_config(name="worker-late", queues=(queue,)))
    task = asyncio.create_task(late.run())
    try:
        await eventually(
            lambda: settled(redis, stream, keys.WORKERS_GROUP),
            what="the late worker reading the message and acknowledging it",
        )
    finally:
        late.stop()
        await asyncio.wait_for(task, timeout=15)
    assert not ran.exists()  # the command never ran


async def test_batch_triggers_many_runs_in_one_request(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    body = {"runs": [{"params": {"i": i}} for i in range(50)] + [{"idempotency_key": "k1"}] * 2}
    response = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch", json=body, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["created"] == 51
    assert result["runs"][50]["id"] == result["runs"][51]["id"]
    for run in result["runs"][:5]:
        assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    replay = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch",
        json={"runs": [{"idempotency_key": "k1"}]},
        headers=owner.headers,
    )
    assert replay.status_code == 200 and replay.json()["created"] == 0


async def test_batch_limits_and_bad_triggers_are_422(client: AsyncClient, owner: Account) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    url = f"/api/v1/jobs/{job['id']}/runs"
    too_many = {"runs": [{}] * 1001}
    for batch in (too_many, {"runs": []}):
        response = await client.post(url + "/batch", json=batch, headers=owner.headers)
        assert_error(response, 422, "validation_failed")
    for body in (
        {"delay_seconds": -1},
        {"delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"},
        {"run_at": "2030-01-01T00:00:00"},  # no time zone
        {"run_at": "9999-12-31T23:00:00-20:00"},  # no UTC form: year 10000
        {"run_at": "0001-01-01T01:00:00+20:00"},  # nor here: year 0
        {"params": []},
        {"surprise": 1},
        {"idempotency_key": ""},
    ):
        response = await client.post(url, json=body, headers=owner.headers)
        assert_error(response, 422, "validation_failed")


async def test_an_instant_with_any_offset_python_reads_is_stored_as_its_utc_instant(
    client: AsyncClient, owner: Account
) -> None:
    """Python reads offsets up to 23:59, PostgreSQL up to 15:59: the API converts to UTC."""
    job = await create_job(client, owner, [python_task("noop")])
    url = f"/api/v1/jobs/{job['id']}/runs"
    body = {"runs": [{"run_at": "2873-03-17T09:47:25+20:16"}]}
    response = await client.post(url + "/batch", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    (run,) = response.json()["runs"]
    assert datetime.fromisoformat(run["run_at"]) == datetime(2873, 3, 16, 13, 31, 25, tzinfo=UTC)
    await client.post(f"/api/v1/runs/{run['id']}/cancel", headers=owner.headers)


async def test_rerun_from_failed_reuses_what_succeeded(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client,
        owner,
        [
            python_task("ok", "worker.builtins:echo", kwargs={"value": 7}),
            python_task("bad", "worker.builtins:fail", depends_on=["ok"]),
        ],
    )
    run = await trigger(client, owner, job["id"])
    failed = await wait_for_run(client, owner, run["id"])
    assert failed["status"] == "failed"
    response = await client.post(
        f"/api/v1/runs/{run['id']}/rerun", json={"from_failed": True}, headers=owner.headers
    )
    assert response.status_code == 201
    rerun = await wait_for_run(client, owner, response.json()["id"])
    assert rerun["rerun_of"] == run["id"]
    assert task_of(rerun, "ok")["reason"] == "reused"
    assert task_of(rerun, "ok")["output"] == 7
    assert task_of(rerun, "ok")["attempts"] == []
    assert len(task_of(rerun, "bad")["attempts"]) == 1
    whole = await client.post(f"/api/v1/runs/{run['id']}/rerun", headers=owner.headers)
    fresh = await wait_for_run(client, owner, whole.json()["id"])
    assert len(task_of(fresh, "ok")["attempts"]) == 1


async def test_rerun_from_failed_runs_everything_downstream_of_a_rerun_task_again(
    client: AsyncClient, owner: Account, running_worker: object, tmp_path: Path
) -> None:
    marker, ran = tmp_path / "flaky", tmp_path / "after.log"
    job = await create_job(
        client,
        owner,
        [
            python_task("check", "worker.builtins:echo", kwargs={"value": ["a", "b"]}),
            python_task(
                "extract", "worker.builtins:echo", kwargs={"value": 1}, depends_on=["check"]
            ),
            python_task(
                "per_file",
                "tests.runs.tasks:shout",
                depends_on=["extract"],
                for_each="tasks.check.output",
            ),
            python_task(
                "flaky",
                "tests.runs.tasks:flaky",
                depends_on=["per_file"],
                kwargs={"marker": str(marker), "failures": 1},
            ),
            # Runs after flaky whatever its outcome, so the first run leaves it succeeded.
            shell_task(
                "after", f"echo ran >> {ran}", depends_on=["flaky"], trigger_rule="all_done"
            ),
        ],
        failure_policy="continue",
    )
    run = await trigger(client, owner, job["id"])
    failed = await wait_for_run(client, owner, run["id"])
    assert failed["status"] == "failed"
    assert task_of(failed, "after")["status"] == "succeeded"
    response = await client.post(
        f"/api/v1/runs/{run['id']}/rerun", json={"from_failed": True}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    rerun = await wait_for_run(client, owner, response.json()["id"])
    assert rerun["status"] == "succeeded", rerun
    for name in ("check", "extract", "per_file"):
        assert task_of(rerun, name)["reason"] == "reused", name
        assert task_of(rerun, name)["attempts"] == []
    assert len(task_of(rerun, "flaky")["attempts"]) == 1
    after = task_of(rerun, "after")
    assert after["reason"] != "reused" and len(after["attempts"]) == 1
    assert ran.read_text().splitlines() == ["ran", "ran"]  # once per run


async def test_concurrent_triggers_with_one_idempotency_key_make_one_run(
    client: AsyncClient, owner: Account
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    url = f"/api/v1/jobs/{job['id']}/runs"
    responses = await asyncio.gather(
        *[
            client.post(url, json={"idempotency_key": "same"}, headers=owner.headers)
            for _ in range(8)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await client.get(f"/api/v1/runs?job_id={job['id']}", headers=owner.headers)
    assert len(listed.json()["items"]) == 1


async def test_concurrent_triggers_under_forbid_make_one_run(
    client: AsyncClient, owner: Account
) -> None:
    job = await create_job(client, owner, [waiting()], concurrency_policy="forbid")
    url = f"/api/v1/jobs/{job['id']}/runs"
    responses = await asyncio.gather(
        *[client.post(url, json={}, headers=owner.headers) for _ in range(6)]
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    for refused in (r for r in responses if r.status_code == 409):
        assert_error(refused, 409, "conflict")
    created = next(r.json() for r in responses if r.status_code == 201)
    listed = await client.get(f"/api/v1/runs?job_id={job['id']}", headers=owner.headers)
    assert [r["id"] for r in listed.json()["items"]] == [created["id"]]
    await client.post(f"/api/v1/runs/{created['id']}/cancel", headers=owner.headers)

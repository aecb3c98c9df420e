"""Job-to-job triggers: ``triggers: [{on: run_finished, job: other, status: [...]}]`` starts
a job when a run of another finishes with one of the statuses, the upstream run's outputs
in its ``upstream`` param; unknown jobs, other tenants' jobs and cycles are refused at
save time."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task, trigger, wait_for_run


def _spec(name: str, triggers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "triggers": triggers, "tasks": [python_task("noop")]}


async def _runs_of(client: AsyncClient, owner: Account, job_id: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/runs", params={"job_id": job_id}, headers=owner.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_unknown_other_tenant_and_cyclic_triggers_are_refused(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    theirs = await create_job(client, stranger, [python_task("noop")])
    a = await create_job(client, owner, [python_task("noop")])
    for triggers in (
        [{"job": "no-such-job"}],
        [{"job": theirs["name"]}],  # same tenant only: another tenant's job is unknown here
        [{"on": "run_started", "job": a["name"]}],
        [{"job": a["name"], "status": []}],
        [{"job": a["name"], "status": ["skipped"]}],
    ):
        response = await client.post(
            "/api/v1/jobs", json=_spec("b-job", triggers), headers=owner.headers
        )
        assert_error(response, 422, "validation_failed")
    itself = await client.post(
        "/api/v1/jobs", json=_spec(a["name"] + "-x", [{"job": a["name"] + "-x"}]),
        headers=owner.headers,
    )  # fmt: skip
    assert_error(itself, 422, "validation_failed")

    b = await client.post(
        "/api/v1/jobs", json=_spec("b-job", [{"job": a["name"]}]), headers=owner.headers
    )
    assert b.status_code == 201, b.text
    c = await client.post(
        "/api/v1/jobs", json=_spec("c-job", [{"job": "b-job"}]), headers=owner.headers
    )
    assert c.status_code == 201, c.text
    # a <- c would close a -> b -> c -> a.
    closing = await client.put(
        f"/api/v1/jobs/{a['id']}", json=_spec(a["name"], [{"job": "c-job"}]),
        headers=owner.headers,
    )  # fmt: skip
    error = assert_error(closing, 422, "validation_failed")
    assert "cycle" in error["message"] and "c-job" in error["message"]
    unchanged = await client.get(f"/api/v1/jobs/{a['id']}", headers=owner.headers)
    assert unchanged.json()["current_version"] == 1


async def test_yaml_on_key_is_read_as_written(client: AsyncClient, owner: Account) -> None:
    a = await create_job(client, owner, [python_task("noop")])
    yaml = (
        f"name: after-{a['name']}\n"
        f"triggers:\n  - on: run_finished\n    job: {a['name']}\n    status: [failed]\n"
        "tasks:\n  - {name: t, type: python, function: 'worker.builtins:noop'}\n"
    )
    response = await client.post(
        "/api/v1/jobs",
        content=yaml,
        headers={**owner.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["triggers"] == [
        {"on": "run_finished", "job": a["name"], "status": ["failed"]}
    ]


async def test_a_finished_run_starts_its_downstream_jobs_with_its_outputs(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object
) -> None:
    upstream = await create_job(
        client, owner, [python_task("add", "tests.runs.tasks:add", kwargs={"a": 2, "b": 3})]
    )
    on_success = await client.post(
        "/api/v1/jobs",
        json={
            **_spec("on-success", [{"on": "run_finished", "job": upstream["name"]}]),
            "tasks": [python_task("show", "worker.builtins:echo")],
        },
        headers=owner.headers,
    )
    assert on_success.status_code == 201, on_success.text
    on_failure = await client.post(
        "/api/v1/jobs",
        json=_spec("on-failure", [{"job": upstream["name"], "status": ["failed"]}]),
        headers=owner.headers,
    )
    assert on_failure.status_code == 201, on_failure.text

    run = await trigger(client, owner, upstream["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "succeeded"
    [downstream] = await eventually(
        lambda: _runs_of(client, owner, on_success.json()["id"]), what="the downstream run"
    )
    assert downstream["trigger"] == "upstream"
    assert downstream["params"]["upstream"] == {
        "run_id": run["id"], "job": upstream["name"], "status": "succeeded",
        "outputs": {"add": {"sum": 5}},
    }  # fmt: skip
    done = await wait_for_run(client, owner, downstream["id"])
    assert done["status"] == "succeeded"
    # Its task saw the upstream's outputs among the run's params.
    [task] = done["tasks"]
    assert task["output"]["upstream"]["outputs"] == {"add": {"sum": 5}}
    # The failure-only job did not start (and the downstream's own finish started nothing).
    assert await _runs_of(client, owner, on_failure.json()["id"]) == []


async def test_a_failed_run_starts_the_jobs_waiting_for_failures(
    client: AsyncClient, owner: Account, running_worker: object, running_reactor: object
) -> None:
    upstream = await create_job(client, owner, [python_task("boom", "worker.builtins:fail")])
    watcher = await client.post(
        "/api/v1/jobs",
        json=_spec("watcher", [{"job": upstream["name"], "status": ["failed", "cancelled"]}]),
        headers=owner.headers,
    )
    assert watcher.status_code == 201, watcher.text
    run = await trigger(client, owner, upstream["id"])
    assert (await wait_for_run(client, owner, run["id"]))["status"] == "failed"
    [downstream] = await eventually(
        lambda: _runs_of(client, owner, watcher.json()["id"]), what="the watcher's run"
    )
    assert downstream["params"]["upstream"]["status"] == "failed"
    # A cancelled run (cancelled through the API, not by the engine) counts too.
    later = await trigger(client, owner, upstream["id"], delay_seconds=3600)
    cancel = await client.post(f"/api/v1/runs/{later['id']}/cancel", headers=owner.headers)
    assert cancel.status_code == 200, cancel.text
    runs = await eventually(
        lambda: _runs_of(client, owner, watcher.json()["id"]),
        lambda items: len(items) == 2,
        what="a second watcher run",
    )
    assert runs[0]["params"]["upstream"]["status"] == "cancelled"

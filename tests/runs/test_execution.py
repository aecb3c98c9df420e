"""End to end: API -> PostgreSQL -> engine -> Redis Streams -> worker -> engine -> API."""

from __future__ import annotations

from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.runs.factories import create_job, python_task, shell_task, task_of, trigger, wait_for_run


async def test_python_task_runs_and_its_output_is_recorded(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client, owner, [python_task("add", "tests.runs.tasks:add", kwargs={"a": 2, "b": 3})]
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded", done
    task = task_of(done, "add")
    assert task["output"] == {"sum": 5}
    assert [a["status"] for a in task["attempts"]] == ["succeeded"]


async def test_shell_dag_runs_in_dependency_order(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client,
        owner,
        [
            shell_task("first", "echo one; echo '{\"n\": 1}' > $BATON_OUTPUT"),
            shell_task("second", "echo two", depends_on=["first"]),
        ],
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded", done
    first, second = task_of(done, "first"), task_of(done, "second")
    assert first["output"] == {"n": 1}
    assert first["finished_at"] <= second["started_at"]
    logs = await client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers)
    assert [(line["task"], line["line"]) for line in logs.json()["items"]] == [
        ("first", "one"),
        ("second", "two"),
    ]


async def test_failed_task_is_retried_with_growing_delays(
    client: AsyncClient, owner: Account, running_worker: object, tmp_path: object
) -> None:
    marker = f"{tmp_path}/flaky"
    retry = {"max_attempts": 3, "initial_delay": 0.2, "factor": 3, "max_delay": 10, "jitter": False}
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "flaky",
                "tests.runs.tasks:flaky",
                kwargs={"marker": marker, "failures": 2},
                retry=retry,
            )
        ],
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded", done
    attempts = task_of(done, "flaky")["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert "failure 1" in attempts[0]["error"]
    from datetime import datetime

    def gap(i: int) -> float:
        return (
            datetime.fromisoformat(attempts[i + 1]["started_at"])
            - datetime.fromisoformat(attempts[i]["finished_at"])
        ).total_seconds()

    # Never earlier than the policy says (0.2 s, then 0.2 x 3); how much later depends on
    # the machine, so the gaps are not compared with each other (the delays themselves:
    # tests/kernel/test_dag.py::test_retry_delays_grow_and_are_capped).
    assert gap(0) >= 0.2 and gap(1) >= 0.6


async def test_exhausted_retries_fail_the_run_and_skip_downstream(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client,
        owner,
        [
            python_task(
                "boom", "worker.builtins:fail", retry={"max_attempts": 2, "initial_delay": 0}
            ),
            python_task("after", depends_on=["boom"]),
        ],
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "failed"
    assert "boom" in done["reason"]
    assert task_of(done, "boom")["status"] == "failed"
    assert len(task_of(done, "boom")["attempts"]) == 2
    assert task_of(done, "after")["status"] == "upstream_failed"


async def test_timeout_kills_the_whole_process_group(
    client: AsyncClient, owner: Account, running_worker: object, tmp_path: object
) -> None:
    pidfile = f"{tmp_path}/pids"
    command = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    job = await create_job(client, owner, [shell_task("slow", command, timeout_seconds=1)])
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    task = task_of(done, "slow")
    assert done["status"] == "failed"
    assert task["reason"] == "timeout"
    import os
    from pathlib import Path

    grandchild = int(Path(pidfile).read_text())
    try:
        os.kill(grandchild, 0)
        alive = Path(f"/proc/{grandchild}/stat").read_text().split()[2] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive, "the background sleep outlived its task"


async def test_delayed_run_starts_no_earlier_than_asked(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    from datetime import datetime

    job = await create_job(client, owner, [python_task("noop")])
    run = await trigger(client, owner, job["id"], delay_seconds=1.5)
    assert run["status"] == "queued"
    done = await wait_for_run(client, owner, run["id"])
    started = datetime.fromisoformat(task_of(done, "noop")["started_at"])
    run_at = datetime.fromisoformat(run["run_at"])
    created = datetime.fromisoformat(run["created_at"])
    assert (run_at - created).total_seconds() >= 1.4
    assert started >= run_at  # how soon after is latency, measured by `make bench`


async def test_idempotency_key_returns_the_same_run(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(client, owner, [python_task("noop")])
    first = await trigger(client, owner, job["id"], idempotency_key="order-42")
    again = await trigger(client, owner, job["id"], expect=200, idempotency_key="order-42")
    assert again["id"] == first["id"]
    runs = await client.get(f"/api/v1/runs?job_id={job['id']}", headers=owner.headers)
    assert len(runs.json()["items"]) == 1


async def test_params_override_job_defaults(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    job = await create_job(
        client,
        owner,
        [python_task("show", "tests.runs.tasks:show")],
        params={"env": "dev", "date": "2026-01-01"},
    )
    run = await trigger(client, owner, job["id"], params={"env": "prod"})
    done = await wait_for_run(client, owner, run["id"])
    assert task_of(done, "show")["output"] == {"env": "prod", "date": "2026-01-01"}

"""DAG semantics end to end: conditions, trigger rules, failure policies, fan-out."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.settings import Settings
from backend.engine.loop import Engine
from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.fixtures.streams import observe, settled
from tests.fixtures.waiting import eventually
from tests.runs.factories import (
    create_job,
    python_task,
    shell_task,
    task_of,
    trigger,
    wait_for_run,
)


def echo(name: str, value: object, **extra: object) -> dict:
    return python_task(name, "worker.builtins:echo", kwargs={"value": value}, **extra)


def fail(name: str, **extra: object) -> dict:
    return python_task(name, "worker.builtins:fail", **extra)


async def run_job(client: AsyncClient, owner: Account, tasks: list[dict], **job: object) -> dict:
    created = await create_job(client, owner, tasks, **job)
    run = await trigger(client, owner, created["id"], **job.pop("trigger", {}))  # type: ignore[arg-type]
    return await wait_for_run(client, owner, run["id"], timeout=30)


async def test_condition_true_runs_and_false_skips_with_propagation(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    tasks = [
        echo("check", {"rows": 0}),
        echo(
            "load",
            "loaded",
            depends_on=["check"],
            when="tasks.check.output.rows > 0 and params.env == 'prod'",
        ),
        echo("after_load", "x", depends_on=["load"]),
        echo("always", "x", depends_on=["load"], trigger_rule="none_failed"),
    ]
    done = await run_job(client, owner, tasks, params={"env": "prod"})
    assert done["status"] == "succeeded"
    assert task_of(done, "load")["status"] == "skipped"
    assert task_of(done, "load")["explanation"].startswith("condition is false")
    assert task_of(done, "after_load")["status"] == "skipped"
    assert "'load' was skipped" in task_of(done, "after_load")["explanation"]
    assert task_of(done, "always")["status"] == "succeeded"

    tasks[0] = echo("check", {"rows": 5})
    done = await run_job(client, owner, tasks, params={"env": "prod"})
    assert [task_of(done, n)["status"] for n in ("load", "after_load", "always")] == [
        "succeeded",
        "succeeded",
        "succeeded",
    ]


async def test_trigger_rules_after_a_failure_that_continues(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    done = await run_job(
        client,
        owner,
        [
            fail("flaky", on_failure="continue"),
            echo("ok", 1),
            echo("needs_all", 1, depends_on=["flaky", "ok"]),
            echo("alert", 1, depends_on=["flaky"], trigger_rule="one_failed"),
            echo("cleanup", 1, depends_on=["flaky", "ok"], trigger_rule="all_done"),
            echo("if_any_ok", 1, depends_on=["flaky", "ok"], trigger_rule="one_success"),
            echo("only_failures", 1, depends_on=["flaky"], trigger_rule="all_failed"),
            echo("no_failures", 1, depends_on=["ok"], trigger_rule="none_failed_min_one_success"),
        ],
        failure_policy="continue",
    )
    status = {t["name"]: t["status"] for t in done["tasks"]}
    assert status == {
        "flaky": "failed",
        "ok": "succeeded",
        "needs_all": "upstream_failed",
        "alert": "succeeded",
        "cleanup": "succeeded",
        "if_any_ok": "succeeded",
        "only_failures": "succeeded",
        "no_failures": "succeeded",
    }
    assert done["status"] == "succeeded"  # flaky continues on failure
    assert "'flaky'" in task_of(done, "needs_all")["explanation"]


async def test_fail_fast_cancels_running_tasks_at_the_first_failure(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    done = await run_job(
        client,
        owner,
        [shell_task("slow", "sleep 60"), fail("boom"), echo("after", 1, depends_on=["boom"])],
    )
    assert done["status"] == "failed" and done["reason"] == "task failed: boom"
    slow = task_of(done, "slow")
    assert slow["status"] == "cancelled" and slow["reason"] == "fail_fast"
    assert "'boom' failed" in slow["explanation"]
    assert task_of(done, "after")["status"] in ("upstream_failed", "cancelled")
    await eventually(  # the worker really stops the shell process
        lambda: client.get(f"/api/v1/runs/{done['id']}", headers=owner.headers),
        lambda r: task_of(r.json(), "slow")["attempts"][-1]["status"] == "cancelled",
        what="the slow attempt cancelled by the worker",
    )


async def test_continue_lets_independent_branches_finish(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    done = await run_job(
        client,
        owner,
        [
            python_task("slow", "tests.runs.tasks:wait", kwargs={"seconds": 0.5}),
            echo("after_slow", 1, depends_on=["slow"]),
            fail("boom"),
            echo("after_boom", 1, depends_on=["boom"]),
        ],
        failure_policy="continue",
    )
    status = {t["name"]: t["status"] for t in done["tasks"]}
    assert status == {
        "slow": "succeeded",
        "after_slow": "succeeded",
        "boom": "failed",
        "after_boom": "upstream_failed",
    }
    assert done["status"] == "failed"


async def test_for_each_with_many_items_passes_each_item_and_collects_outputs(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    done = await run_job(
        client,
        owner,
        [
            echo("list", {"files": ["a.csv", "b.csv", "c.csv"]}),
            shell_task(
                "per_file",
                'echo "{\\"file\\": \\"$BATON_ITEM\\"}" > $BATON_OUTPUT',
                depends_on=["list"],
                for_each="tasks.list.output.files",
            ),
            python_task(
                "shout",
                "tests.runs.tasks:shout",
                depends_on=["list"],
                for_each="tasks.list.output.files",
            ),
            python_task(
                "report",
                "tests.runs.tasks:show_output",
                depends_on=["per_file"],
                kwargs={"value": "done"},
                trigger_rule="all_done",
            ),
        ],
    )
    assert done["status"] == "succeeded", done
    group = task_of(done, "per_file")
    assert group["status"] == "succeeded"
    assert group["output"] == [{"file": "a.csv"}, {"file": "b.csv"}, {"file": "c.csv"}]
    children = [t for t in done["tasks"] if t["parent_id"] == group["id"]]
    assert sorted(c["name"] for c in children) == ["per_file[0]", "per_file[1]", "per_file[2]"]
    assert {c["item"] for c in children} == {"a.csv", "b.csv", "c.csv"}
    assert task_of(done, "shout")["output"] == ["A.CSV", "B.CSV", "C.CSV"]
    assert task_of(done, "report")["status"] == "succeeded"


async def test_for_each_with_one_and_with_no_items(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    tasks = [
        echo("list", []),
        python_task(
            "each", "tests.runs.tasks:shout", depends_on=["list"], for_each="tasks.list.output"
        ),
        echo("after", 1, depends_on=["each"]),
        echo("regardless", 1, depends_on=["each"], trigger_rule="none_failed"),
    ]
    done = await run_job(client, owner, tasks)
    assert task_of(done, "each")["status"] == "skipped"
    assert task_of(done, "each")["explanation"] == "for_each gave no items"
    assert task_of(done, "after")["status"] == "skipped"
    assert task_of(done, "regardless")["status"] == "succeeded"
    tasks[0] = echo("list", ["solo"])
    done = await run_job(client, owner, tasks)
    assert task_of(done, "each")["output"] == ["SOLO"]
    assert task_of(done, "each[0]")["item"] == "solo"


async def test_a_failed_item_fails_its_group_and_under_fail_fast_the_run(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    done = await run_job(
        client,
        owner,
        [
            echo("list", ["ok", "boom", "ok"]),
            python_task(
                "each",
                "tests.runs.tasks:fail_on",
                depends_on=["list"],
                for_each="tasks.list.output",
            ),
        ],
        failure_policy="continue",
    )
    group = task_of(done, "each")
    assert group["status"] == "failed" and "1 of 3 items failed" in group["error"]
    assert done["status"] == "failed"


async def test_fan_out_children_respect_the_quota_and_do_not_starve_other_runs(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    running_worker: object,
    tmp_path: Path,
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE tenants SET max_concurrent_tasks = 3 WHERE id = :t"),
            {"t": owner.tenant_id},
        )
    wide = await create_job(
        client,
        owner,
        [
            echo("list", list(range(40))),
            python_task(  # each child runs until the test releases it
                "each",
                "tests.runs.tasks:wait_for_release",
                kwargs={"folder": str(tmp_path)},
                depends_on=["list"],
                for_each="tasks.list.output",
            ),
        ],
    )
    small = await create_job(client, owner, [echo("one", 1)])
    wide_run = await trigger(client, owner, wide["id"])

    async def wide_detail() -> dict[str, Any]:
        response = await client.get(f"/api/v1/runs/{wide_run['id']}", headers=owner.headers)
        return dict(response.json())

    def running(detail: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for t in detail["tasks"] if t["parent_id"] and t["status"] == "running"]

    await eventually(  # the fan-out holds the whole quota
        wide_detail, lambda d: len(running(d)) == 3, what="three children running"
    )
    small_run = await trigger(client, owner, small["id"])

    async def small_started() -> str | None:
        response = await client.get(f"/api/v1/runs/{small_run['id']}", headers=owner.headers)
        return cast("str | None", task_of(response.json(), "one")["started_at"])

    # The children end one at a time: each freed slot is admitted on its own (by the
    # finishing step or the admission loop). The first one must go to the small run, which
    # has nothing in flight; a small run queued behind the fan-out would see every
    # remaining child start before it.
    released = 0
    while await small_started() is None and released < 6:
        child = running(await wide_detail())[0]
        (tmp_path / str(child["item"])).touch()
        released += 1

        async def settled(name: str = child["name"]) -> bool:
            wide_now = await wide_detail()
            if task_of(wide_now, name)["status"] != "succeeded":
                return False
            return len(running(wide_now)) == 3 or await small_started() is not None

        await eventually(settled, bool, what=f"{child['name']} finished and its slot taken")
    assert await small_started() is not None, f"not started after {released} children ended"
    small_done = await wait_for_run(client, owner, small_run["id"], timeout=30)
    small_start = datetime.fromisoformat(task_of(small_done, "one")["started_at"])
    before = [
        t["name"]
        for t in (await wide_detail())["tasks"]
        if t["parent_id"]
        and t["started_at"]
        and datetime.fromisoformat(t["started_at"]) < small_start
    ]
    assert released == 1 and len(before) == 3, (
        f"{len(before) - 3} more children started before the small run, {released} ended"
    )
    assert small_done["status"] == "succeeded"

    for index in range(40):  # the rest, all at once: the quota still holds
        (tmp_path / str(index)).touch()
    wide_done = await wait_for_run(client, owner, wide_run["id"], timeout=60)
    assert wide_done["status"] == "succeeded"
    children = [t for t in wide_done["tasks"] if t["parent_id"]]
    intervals = sorted(
        (datetime.fromisoformat(a["started_at"]), 1) for c in children for a in c["attempts"]
    ) + sorted(
        (datetime.fromisoformat(a["finished_at"]), -1) for c in children for a in c["attempts"]
    )
    level = peak = 0
    for _, step in sorted(intervals):
        level += step
        peak = max(peak, level)
    assert peak <= 3


async def test_duplicate_result_delivery_advances_once(
    client: AsyncClient, owner: Account, redis: Redis, running_worker: object
) -> None:
    stream = keys.events_stream(str(owner.tenant_id))
    events = await observe(redis, stream)  # kept from the trimmer until replayed
    done = await run_job(client, owner, [echo("a", 1), echo("b", 2, depends_on=["a"])])
    replayed = await events.read()
    assert any('"finished"' in fields[EVENT_FIELD] for fields in replayed)
    for fields in replayed:  # every event of the run, once more
        await redis.xadd(stream, fields)
    # The run is over, so the engine may have stopped reading the tenant's stream (its
    # sweep drops idle tenants); a later dispatch would add it back, as this does.
    await redis.sadd(keys.engine_tenants(), str(owner.tenant_id))
    await eventually(  # the engine has read and acknowledged every duplicate
        lambda: settled(redis, stream, keys.ENGINE_GROUP),
        what="the engine consuming the duplicates",
    )
    again = await wait_for_run(client, owner, done["id"])
    assert again["status"] == "succeeded"
    for name in ("a", "b"):
        assert len(task_of(again, name)["attempts"]) == 1
        assert task_of(again, name)["status"] == "succeeded"


async def test_two_engine_replicas_advance_the_same_runs_without_duplicates(
    client: AsyncClient,
    owner: Account,
    app: FastAPI,
    engine_settings: Settings,
    running_worker: object,
) -> None:
    second = Engine(engine_settings, app.state.sessionmaker, app.state.redis, name="engine-two")
    task = asyncio.create_task(second.run())
    try:
        job = await create_job(
            client,
            owner,
            [
                echo("list", list(range(20))),
                python_task(
                    "each",
                    "worker.builtins:echo",
                    depends_on=["list"],
                    for_each="tasks.list.output",
                ),
                echo("left", 1, depends_on=["each"]),
                echo("right", 1, depends_on=["each"]),
                echo("join", 1, depends_on=["left", "right"]),
            ],
        )
        batch = await client.post(
            f"/api/v1/jobs/{job['id']}/runs/batch", json={"runs": [{}] * 5}, headers=owner.headers
        )
        runs = [
            await wait_for_run(client, owner, r["id"], timeout=60) for r in batch.json()["runs"]
        ]
    finally:
        second.stop()
        await asyncio.wait_for(task, timeout=10)
    for run in runs:
        assert run["status"] == "succeeded"
        assert len(run["tasks"]) == 25
        for task_run in run["tasks"]:
            if task_run["name"] != "each":
                assert len(task_run["attempts"]) == 1, task_run


async def test_graph_endpoints(
    client: AsyncClient, owner: Account, stranger: Account, running_worker: object
) -> None:
    job = await create_job(
        client,
        owner,
        [
            echo("a", 1),
            echo("b", 1, depends_on=["a"], when="params.go"),
            echo("c", 1, depends_on=["a"]),
            echo("d", 1, depends_on=["b", "c"], trigger_rule="none_failed"),
        ],
    )
    graph = (await client.get(f"/api/v1/jobs/{job['id']}/graph", headers=owner.headers)).json()
    assert graph["layers"] == [["a"], ["b", "c"], ["d"]]
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    }
    assert next(n for n in graph["nodes"] if n["name"] == "b")["when"] == "params.go"
    run = await trigger(client, owner, job["id"])
    await wait_for_run(client, owner, run["id"])
    shown = (await client.get(f"/api/v1/runs/{run['id']}/graph", headers=owner.headers)).json()
    node = {n["name"]: n for n in shown["nodes"]}
    assert node["b"]["status"] == "skipped" and "condition is false" in node["b"]["explanation"]
    assert node["d"]["status"] == "succeeded" and node["a"]["attempts"] == 1
    assert node["a"]["duration_seconds"] is not None
    assert shown["layers"] == graph["layers"]
    for url in (f"/api/v1/jobs/{job['id']}/graph", f"/api/v1/runs/{run['id']}/graph"):
        assert_error(await client.get(url, headers=stranger.headers), 404, "not_found")


async def test_a_poison_event_is_dead_lettered_and_its_neighbours_still_apply(
    client: AsyncClient, owner: Account, redis: Redis, running_worker: object
) -> None:
    job = await create_job(
        client, owner, [python_task("slow", "tests.runs.tasks:wait", kwargs={"seconds": 4})]
    )
    run = await trigger(client, owner, job["id"])
    running = await wait_for_run(client, owner, run["id"], statuses={"running"})
    slow = task_of(running, "slow")
    stream = keys.events_stream(str(owner.tenant_id))

    def event(seq: object, line: str) -> dict[str, str]:
        body = {
            "kind": "log",
            "task_run_id": slow["id"],
            "run_id": run["id"],
            "attempt": 1,
            "worker": "w",
            "ts": 0,
            "lines": [{"seq": seq, "stream": "stdout", "line": line}],
        }
        return {"e": json.dumps(body)}

    await redis.xadd(stream, event("not-a-number", "poison"))
    await redis.xadd(stream, event(9001, "neighbour"))
    done = await wait_for_run(client, owner, run["id"], timeout=30)
    assert done["status"] == "succeeded"
    logs = await eventually(
        lambda: client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers),
        lambda r: "neighbour" in [line["line"] for line in r.json()["items"]],
        what="the neighbour's log line",
    )
    assert [line["line"] for line in logs.json()["items"]] == ["neighbour"]
    await eventually(  # three failed retries, half a second apart, then set aside
        lambda: redis.xpending(stream, keys.ENGINE_GROUP),
        lambda pending: pending["pending"] == 0,
        what="the poison event set aside",
    )

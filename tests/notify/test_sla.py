"""SLAs: ``sla: {max_duration, finish_by, timezone}``; a miss is recorded once, marks the
run (``sla_miss`` in its API detail, a badge and the deadline on its dashboard page), is
counted in ``baton_sla_misses_total`` and notified once."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI
from httpx import AsyncClient

from backend.notify.sla import deadline, finish_by_deadline
from kernel.metrics import SLA_MISSES, TENANTS
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.fixtures.waiting import eventually
from tests.notify.helpers import RULES, webhook_channel
from tests.notify.receiver import Receiver
from tests.runs.factories import create_job, python_task, trigger, wait_for_run
from tests.web.helpers import assert_page, browsers_of


def test_finish_by_is_the_first_such_wall_clock_time_after_the_start() -> None:
    berlin = "Europe/Berlin"
    early = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 05:00 in Berlin (CET)
    late = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    assert finish_by_deadline(early, "06:00", berlin) == datetime(2026, 3, 10, 5, 0, tzinfo=UTC)
    assert finish_by_deadline(late, "06:00", berlin) == datetime(2026, 3, 11, 5, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)  # 05:00 CEST
    assert finish_by_deadline(summer, "06:00", berlin) == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
    both = {"max_duration": "30m", "finish_by": "05:10", "timezone": berlin}
    assert deadline(both, early) == ("finish_by", datetime(2026, 3, 10, 4, 10, tzinfo=UTC))
    assert deadline({"max_duration": "2h"}, early) == (
        "max_duration", datetime(2026, 3, 10, 6, 0, tzinfo=UTC),
    )  # fmt: skip


async def test_bad_slas_are_refused(client: AsyncClient, owner: Account) -> None:
    for sla in ({}, {"max_duration": "30"}, {"finish_by": "6:00"}, {"max_duration": 30},
                {"finish_by": "06:00", "timezone": "Mars/Olympus"}):  # fmt: skip
        spec = {"name": "sla-job", "sla": sla, "tasks": [python_task("noop")]}
        response = await client.post("/api/v1/jobs", json=spec, headers=owner.headers)
        assert_error(response, 422, "validation_failed")


def _misses_counted(tenant: str) -> float:
    return SLA_MISSES.labels(TENANTS.label(tenant), "max_duration")._value.get()


async def test_a_run_past_its_max_duration_is_marked_counted_and_notified_once(
    client: AsyncClient, owner: Account, stranger: Account, app: FastAPI,
    running_worker: object, running_reactor: object, receiver: Receiver,
) -> None:  # fmt: skip
    before = _misses_counted(str(owner.tenant_id))
    job = await create_job(
        client, owner, [python_task("slow", "worker.builtins:sleep", kwargs={"seconds": 3})],
        sla={"max_duration": "1s"},
    )  # fmt: skip
    hook = await webhook_channel(client, owner, receiver)
    rule = await client.post(
        RULES, json={"channel_id": hook, "job_id": job["id"], "events": ["sla_miss"]},
        headers=owner.headers,
    )  # fmt: skip
    assert rule.status_code == 201, rule.text
    run = await trigger(client, owner, job["id"])

    async def misses() -> list[dict]:
        response = await client.get("/api/v1/sla-misses", headers=owner.headers)
        assert response.status_code == 200, response.text
        return list(response.json())

    [miss] = await eventually(misses, what="the SLA miss")
    assert miss["run_id"] == run["id"] and miss["kind"] == "max_duration"
    [post] = await eventually(lambda: receiver.received, what="the sla_miss notification")
    assert post["verified"] and post["event"] == "run.sla_missed"
    assert post["body"]["run"]["id"] == run["id"]
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded"
    # The miss marks the run: in its API detail and on its dashboard page.
    assert done["sla_miss"] == {
        "kind": "max_duration", "deadline_at": miss["deadline_at"],
        "detected_at": miss["detected_at"],
    }  # fmt: skip
    async with browsers_of(app) as browsers:
        html = assert_page(await (await browsers(owner)).get(f"/runs/{run['id']}"))
        assert 'data-testid="run-sla-miss"' in html and 'data-kind="max_duration"' in html
        assert 'data-testid="run-sla-deadline"' in html
        other = await (await browsers(stranger)).get(f"/runs/{run['id']}")
        assert other.status_code == 404 and "SLA missed" not in other.text
    theirs = await client.get(f"/api/v1/runs/{run['id']}", headers=stranger.headers)
    assert_error(theirs, 404, "not_found")
    # Finished late, already recorded: still one miss, one notification, counted once.
    await eventually(
        lambda: _deliveries_settled(client, owner), what="the notification log settled"
    )
    assert len(await misses()) == 1 and len(receiver.received) == 1
    assert _misses_counted(str(owner.tenant_id)) == before + 1


async def _deliveries_settled(client: AsyncClient, owner: Account) -> bool:
    response = await client.get("/api/v1/notification-deliveries", headers=owner.headers)
    items = response.json()
    return len(items) == 1 and items[0]["status"] == "sent"


async def test_a_run_within_its_sla_is_not_marked(
    client: AsyncClient, owner: Account, app: FastAPI, running_worker: object,
    running_reactor: object,
) -> None:  # fmt: skip
    job = await create_job(client, owner, [python_task("quick")], sla={"max_duration": "1h"})
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "succeeded" and done["sla_miss"] is None
    async with browsers_of(app) as browsers:
        html = assert_page(await (await browsers(owner)).get(f"/runs/{run['id']}"))
    assert 'data-testid="run-sla-miss"' not in html

"""Triggers' audit events: appended without the chain lock, sealed into the chain after.

The sealer runs in the app (kicked after each trigger's commit); these tests wait for it
with ``eventually`` and then check the chain as ``baton audit verify`` does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.sealer import Sealer
from backend.audit.service import event_hash, pending_row, seal_pending
from backend.core.db import scope_to_tenant
from backend.core.principal import Actor
from tests.audit.helpers import audit_rows, tamper, verify
from tests.fixtures.factories import Account, create_api_token, create_tenant
from tests.fixtures.waiting import eventually
from tests.runs.factories import create_job, python_task

_INSERT_PENDING = text(
    """INSERT INTO audit_pending (tenant_id, event_id, occurred_at, actor_type, actor_id,
           actor_label, action, target_type, target_id, outcome, ip, user_agent, request_id,
           details)
       SELECT tenant_id, event_id, occurred_at, actor_type, actor_id, actor_label, action,
           target_type, target_id, outcome, ip, user_agent, request_id, details
       FROM jsonb_populate_record(NULL::audit_pending, CAST(:row AS jsonb))
       RETURNING id"""
)

_DELETE_PENDING = text("DELETE FROM audit_pending WHERE id = :i")
_RELEASE = text("SELECT audit_release_sealed(:t, :ids)")


async def _pending(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM audit_pending WHERE tenant_id = :t ORDER BY id"), {"t": tenant_id}
        )
        return [dict(row._mapping) for row in result]


async def _append_unsealed(app: FastAPI, tenant_id: uuid.UUID, action: str) -> int:
    """A pending event committed as the runtime role, with no sealer told about it (as if
    the process that wrote it died before its kick)."""
    row = pending_row(tenant_id=tenant_id, actor=Actor(type="system"), action=action)
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, tenant_id)
        result = await session.execute(_INSERT_PENDING, {"row": json.dumps(row)})
        pending_id = int(result.scalar_one())
        await session.commit()
    return pending_id


async def _trigger(client: AsyncClient, account: Account, job_id: str) -> str:
    response = await client.post(f"/api/v1/jobs/{job_id}/runs", headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _sealed(engine: AsyncEngine, account: Account, action: str) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        if await _pending(engine, account.tenant_id):
            return []
        return [r for r in await audit_rows(engine, account.tenant_id) if r["action"] == action]

    return await eventually(probe, what=f"{action} events sealed")


async def test_a_trigger_is_sealed_into_the_chain_after_its_commit(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    run_id = await _trigger(client, owner, job["id"])
    [row] = await _sealed(owner_engine, owner, "run.triggered")
    assert row["target_id"] == run_id
    assert row["details"] == {"job_id": job["id"], "trigger": "manual"}
    assert row["pending_id"] is not None
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.unsealed == 0
    assert report.events_checked == len(await audit_rows(owner_engine, owner.tenant_id))


async def test_a_batch_trigger_counts_the_runs_it_created(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    body = {"runs": [{"idempotency_key": "k1"}, {"idempotency_key": "k2"}]}
    response = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch", json=body, headers=owner.headers
    )
    assert response.status_code == 201
    body = {"runs": [{"idempotency_key": k} for k in ("k1", "k2", "k3", "k4")]}
    response = await client.post(
        f"/api/v1/jobs/{job['id']}/runs/batch", json=body, headers=owner.headers
    )
    assert response.json()["created"] == 2  # k1 and k2 answer the earlier runs
    rows = await _sealed(owner_engine, owner, "run.batch_triggered")
    assert [r["details"] for r in rows] == [{"count": 2, "trigger": "batch"}] * 2
    assert (await verify(app, owner.tenant_id)).intact


async def test_an_idempotent_replay_records_nothing(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    path = f"/api/v1/jobs/{job['id']}/runs"
    first = await client.post(path, json={"idempotency_key": "once"}, headers=owner.headers)
    again = await client.post(path, json={"idempotency_key": "once"}, headers=owner.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert len(await _sealed(owner_engine, owner, "run.triggered")) == 1


async def test_concurrent_triggers_are_sealed_gap_free_in_one_chain(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    """Triggers written at once (and direct appends between them) end in one chain."""
    job = await create_job(client, owner, [python_task("a")])
    results = await asyncio.gather(
        *(_trigger(client, owner, job["id"]) for _ in range(24)),
        *(create_api_token(client, owner, "viewer", name=f"t{i}") for i in range(3)),
    )
    rows = await _sealed(owner_engine, owner, "run.triggered")
    assert {r["target_id"] for r in rows} == set(results[:24])
    every = await audit_rows(owner_engine, owner.tenant_id)
    assert [r["seq"] for r in every] == list(range(1, len(every) + 1))
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.events_checked == len(every)


async def test_triggers_of_one_tenant_do_not_wait_for_the_chain_lock(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    """A trigger commits while another transaction holds the tenant's chain lock."""
    job = await create_job(client, owner, [python_task("a")])
    async with owner_engine.connect() as holder:
        await holder.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('audit:' || :t, 0))"),
            {"t": str(owner.tenant_id)},
        )
        run_id = await _trigger(client, owner, job["id"])
        pending = await _pending(owner_engine, owner.tenant_id)
        assert [p["target_id"] for p in pending] == [run_id]
        await holder.rollback()
    await _sealed(owner_engine, owner, "run.triggered")


async def test_verify_reports_unsealed_events_and_writes_nothing(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = len(await audit_rows(owner_engine, owner.tenant_id))
    await _append_unsealed(app, owner.tenant_id, "test.unsealed")
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.unsealed == 1 and report.events_checked == before
    assert len(await _pending(owner_engine, owner.tenant_id)) == 1

    assert await Sealer(app.state.sessionmaker).seal(owner.tenant_id) == 1
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.unsealed == 0 and report.events_checked == before + 1
    assert await _pending(owner_engine, owner.tenant_id) == []


async def test_the_sweep_seals_what_a_crashed_process_left(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    first = await create_tenant(client)
    second = await create_tenant(client)
    for account in (first, second):
        await _append_unsealed(app, account.tenant_id, "test.left_behind")
    assert await Sealer(app.state.sessionmaker).sweep() >= 2
    for account in (first, second):
        assert await _pending(owner_engine, account.tenant_id) == []
        report = await verify(app, account.tenant_id)
        assert report.intact and report.unsealed == 0


async def test_reading_the_log_seals_first(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    await _append_unsealed(app, owner.tenant_id, "test.read_your_writes")
    response = await client.get(
        "/api/v1/audit", params={"action": "test.read_your_writes"}, headers=owner.headers
    )
    assert [e["action"] for e in response.json()["items"]] == ["test.read_your_writes"]


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_a_sealed_trigger_event_edited_or_deleted_breaks_the_chain(
    change: str, client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    job = await create_job(client, owner, [python_task("a")])
    await _trigger(client, owner, job["id"])
    await _trigger(client, owner, job["id"])
    first, _ = await _sealed(owner_engine, owner, "run.triggered")
    if change == "edit":
        statement = "UPDATE audit_events SET target_id = 'x' WHERE tenant_id = :t AND seq = :s"
        reason = "content does not match its hash"
    else:
        statement = "DELETE FROM audit_events WHERE tenant_id = :t AND seq = :s"
        reason = "event missing"
    assert await tamper(owner_engine, statement, t=owner.tenant_id, s=first["seq"]) == 1
    report = await verify(app, owner.tenant_id)
    assert (report.broken_seq, report.reason) == (first["seq"], reason)


async def test_a_forged_seal_of_an_edited_pending_event_cannot_release_it(
    app: FastAPI, owner: Account, stranger: Account, owner_engine: AsyncEngine
) -> None:
    """The runtime role can neither delete a pending event nor have the release function
    drop one whose sealed copy differs from it."""
    pending_id = await _append_unsealed(app, owner.tenant_id, "test.original")
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        with pytest.raises(DBAPIError, match="permission denied"):
            await session.execute(_DELETE_PENDING, {"i": pending_id})
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        released = await session.execute(_RELEASE, {"t": owner.tenant_id, "ids": [pending_id]})
        assert released.scalar_one() == 0  # not sealed yet: kept
        await session.commit()
    # A sealed copy whose content differs (as the owner could forge) releases nothing.
    rows = await audit_rows(owner_engine, owner.tenant_id)
    head = rows[-1]
    forged_hash = event_hash(head["hash"], _event_like(head, "test.forged"))
    await tamper(
        owner_engine,
        """INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type, action,
               outcome, details, prev_hash, hash, pending_id)
           SELECT tenant_id, :seq, event_id, occurred_at, actor_type, 'test.forged', outcome,
               details, :prev, :hash, id
           FROM audit_pending WHERE id = :pid""",
        seq=head["seq"] + 1,
        prev=head["hash"],
        hash=forged_hash,
        pid=pending_id,
    )
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        released = await session.execute(_RELEASE, {"t": owner.tenant_id, "ids": [pending_id]})
        assert released.scalar_one() == 0
        await session.commit()
    assert [p["id"] for p in await _pending(owner_engine, owner.tenant_id)] == [pending_id]
    # The forged row stays in the way of sealing this tenant's event; the sweep goes on to
    # seal another tenant's.
    await _append_unsealed(app, stranger.tenant_id, "test.other")
    assert await Sealer(app.state.sessionmaker).sweep() >= 1
    assert await _pending(owner_engine, stranger.tenant_id) == []
    assert [p["id"] for p in await _pending(owner_engine, owner.tenant_id)] == [pending_id]
    await tamper(owner_engine, "DELETE FROM audit_pending WHERE id = :pid", pid=pending_id)


async def test_sealing_concurrently_from_two_processes_keeps_one_chain(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    """Two sealers (say two API replicas) racing on the same pending rows seal each once."""
    for i in range(30):
        await _append_unsealed(app, owner.tenant_id, f"test.race.{i}")

    async def seal_once() -> int:
        async with app.state.sessionmaker() as session:
            await scope_to_tenant(session, owner.tenant_id)
            sealed = await seal_pending(session, owner.tenant_id)
            await session.commit()
            return sealed

    counts = await asyncio.gather(seal_once(), seal_once(), seal_once())
    assert sum(counts) == 30
    rows = await audit_rows(owner_engine, owner.tenant_id)
    race = [r["action"] for r in rows if r["action"].startswith("test.race.")]
    assert race == [f"test.race.{i}" for i in range(30)]  # in the order they were written
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.unsealed == 0


def _event_like(row: dict[str, Any], action: str) -> Any:
    from backend.audit.models import AuditEvent

    fields = {k: v for k, v in row.items() if k in AuditEvent.model_fields}
    return AuditEvent(**{**fields, "action": action, "seq": row["seq"] + 1})

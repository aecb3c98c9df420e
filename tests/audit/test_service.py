"""What the audit log records, and that its hash chain holds (and catches tampering)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.models import AuditEvent
from backend.audit.service import GENESIS_HASH, event_hash, record, verify_chain
from backend.core.db import scope_to_tenant
from backend.core.principal import Actor, RequestOrigin
from tests.audit.helpers import (
    TEST_CLIENT_IP,
    USER_AGENT,
    audit_count,
    audit_rows,
    head_seq,
    rows_after,
    tamper,
    verify,
)
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import (
    DEFAULT_PASSWORD,
    Account,
    bearer,
    create_api_token,
    create_member,
    create_tenant,
    login,
    unique_email,
)

UA = {"User-Agent": USER_AGENT}


def _headers(account: Account, **extra: str) -> dict[str, str]:
    return {**account.headers, **UA, **extra}


def _assert_origin(row: dict[str, Any], response: Response) -> None:
    assert row["ip"] == TEST_CLIENT_IP
    assert row["user_agent"] == USER_AGENT
    assert row["request_id"] == response.headers["x-request-id"]


async def _one_new_row(engine: AsyncEngine, account: Account, before: int) -> dict[str, Any]:
    rows = await rows_after(engine, account.tenant_id, before)
    assert len(rows) == 1, [r["action"] for r in rows]
    return rows[0]


# --- what each mutating call records --------------------------------------------------


async def test_signup_records_tenant_created_and_member_added(
    client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    email = unique_email("signup")
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": DEFAULT_PASSWORD, "tenant_name": "Audit Signup Org"},
        headers=UA,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    tenant_id, user_id = uuid.UUID(body["tenant"]["id"]), body["user"]["id"]

    rows = await audit_rows(owner_engine, tenant_id)
    assert [(r["seq"], r["action"]) for r in rows] == [(1, "tenant.created"), (2, "member.added")]
    created, added = rows
    for row in rows:
        assert row["actor_type"] == "user"
        assert row["actor_id"] == user_id
        assert row["actor_label"] == email
        assert row["outcome"] == "success"
        _assert_origin(row, response)
    assert (created["target_type"], created["target_id"]) == ("tenant", str(tenant_id))
    assert created["details"] == {"slug": body["tenant"]["slug"]}
    assert (added["target_type"], added["target_id"]) == ("user", user_id)
    assert added["details"] == {"role": "owner"}


async def test_login_success_records_one_event(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": owner.email, "password": owner.password},
        headers=UA,
    )
    assert response.status_code == 200, response.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "auth.login.succeeded"
    assert row["outcome"] == "success"
    assert (row["actor_type"], row["actor_id"], row["actor_label"]) == (
        "user",
        str(owner.user_id),
        owner.email,
    )
    _assert_origin(row, response)


async def test_failed_login_is_recorded_although_the_request_fails(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": owner.email, "password": "definitely-not-the-password"},
        headers=UA,
    )
    assert_error(response, 401, "invalid_credentials")
    assert response.json()["error"]["code"] == "invalid_credentials"
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "auth.login.failed"
    assert row["outcome"] == "failure"
    assert (row["actor_type"], row["actor_id"], row["actor_label"]) == (
        "user",
        str(owner.user_id),
        owner.email,
    )
    _assert_origin(row, response)
    assert (await verify(app, owner.tenant_id)).intact


async def test_failed_login_of_a_multi_tenant_user_is_recorded_in_each_tenant(
    client: AsyncClient, owner_engine: AsyncEngine
) -> None:
    first = await create_tenant(client)
    second = await create_tenant(client, email=first.email, password=first.password)
    before = {t: await head_seq(owner_engine, t) for t in (first.tenant_id, second.tenant_id)}
    response = await client.post(
        "/api/v1/auth/login", json={"email": first.email, "password": "wrong-password-here"}
    )
    assert_error(response, 401, "invalid_credentials")
    for tenant_id, seq in before.items():
        rows = await rows_after(owner_engine, tenant_id, seq)
        assert [(r["action"], r["outcome"]) for r in rows] == [("auth.login.failed", "failure")]


async def test_login_of_an_unknown_email_records_nothing_in_the_tenant(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await audit_count(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/auth/login", json={"email": unique_email("ghost"), "password": "whatever-pass"}
    )
    assert_error(response, 401, "invalid_credentials")
    assert await audit_count(owner_engine, owner.tenant_id) == before


async def test_token_created_and_revoked_each_record_one_event(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    created = await client.post(
        "/api/v1/tokens", json={"name": "deploy", "role": "editor"}, headers=_headers(owner)
    )
    assert created.status_code == 201, created.text
    token_id = created.json()["id"]
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "token.created"
    assert (row["target_type"], row["target_id"]) == ("api_token", token_id)
    assert row["details"] == {"name": "deploy", "role": "editor"}
    assert (row["actor_type"], row["actor_id"]) == ("user", str(owner.user_id))
    assert row["outcome"] == "success"
    _assert_origin(row, created)
    assert created.json()["token"] not in str(row), "the secret must never be audited"

    before = row["seq"]
    revoked = await client.delete(f"/api/v1/tokens/{token_id}", headers=_headers(owner))
    assert revoked.status_code == 204, revoked.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "token.revoked"
    assert (row["target_type"], row["target_id"]) == ("api_token", token_id)
    _assert_origin(row, revoked)

    # Revoking again is a no-op and records nothing.
    again = await client.delete(f"/api/v1/tokens/{token_id}", headers=_headers(owner))
    assert again.status_code == 204
    assert await head_seq(owner_engine, owner.tenant_id) == row["seq"]


async def test_events_done_with_an_api_token_name_the_token(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    token = await create_api_token(client, owner, "admin")
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/tokens",
        json={"name": "child", "role": "viewer"},
        headers={**bearer(token["token"]), **UA},
    )
    assert response.status_code == 201, response.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "token.created"
    assert (row["actor_type"], row["actor_id"], row["actor_label"]) == (
        "token",
        token["id"],
        owner.email,
    )
    _assert_origin(row, response)


async def test_member_changes_each_record_one_event(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    email = unique_email("member")
    before = await head_seq(owner_engine, owner.tenant_id)
    added = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "viewer", "password": DEFAULT_PASSWORD},
        headers=_headers(owner),
    )
    assert added.status_code == 201, added.text
    user_id = added.json()["user_id"]
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "member.added"
    assert (row["target_type"], row["target_id"]) == ("user", user_id)
    assert row["details"] == {"role": "viewer", "email": email}
    assert (row["actor_type"], row["actor_id"]) == ("user", str(owner.user_id))
    _assert_origin(row, added)

    before = row["seq"]
    changed = await client.patch(
        f"/api/v1/members/{user_id}", json={"role": "editor"}, headers=_headers(owner)
    )
    assert changed.status_code == 200, changed.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "member.role_changed"
    assert (row["target_type"], row["target_id"]) == ("user", user_id)
    assert row["details"] == {"from": "viewer", "to": "editor"}
    _assert_origin(row, changed)

    before = row["seq"]
    removed = await client.delete(f"/api/v1/members/{user_id}", headers=_headers(owner))
    assert removed.status_code == 204, removed.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "member.removed"
    assert (row["target_type"], row["target_id"]) == ("user", user_id)
    assert row["details"] == {"role": "editor"}
    _assert_origin(row, removed)


async def test_refresh_logout_and_refresh_reuse_are_recorded(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}, headers=UA
    )
    assert refreshed.status_code == 200, refreshed.text
    row = await _one_new_row(owner_engine, owner, before)
    assert (row["action"], row["outcome"]) == ("auth.token.refreshed", "success")
    _assert_origin(row, refreshed)

    before = row["seq"]
    reused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}, headers=UA
    )
    assert_error(reused, 401, "refresh_token_reused")
    row = await _one_new_row(owner_engine, owner, before)
    assert (row["action"], row["outcome"]) == ("auth.refresh.reused", "failure")
    _assert_origin(row, reused)

    session = await login(client, owner.email, owner.password)
    before = await head_seq(owner_engine, owner.tenant_id)
    logout = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": session["refresh_token"]},
        headers={**bearer(session["access_token"]), **UA},
    )
    assert logout.status_code == 204, logout.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["action"] == "auth.logout"
    _assert_origin(row, logout)


async def test_refused_calls_record_only_the_denial_and_read_only_calls_nothing(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    """A 403 is recorded as ``request.denied`` (tests/audit/test_denied.py), never as the
    action it was refused; a conflict, invalid input and reads record nothing."""
    viewer = await create_member(client, owner, "viewer")
    before = await head_seq(owner_engine, owner.tenant_id)
    denied = await client.post(
        "/api/v1/tokens", json={"name": "x", "role": "viewer"}, headers=viewer.headers
    )
    assert_error(denied, 403, "forbidden")
    duplicate = await client.post(
        "/api/v1/members", json={"email": viewer.email, "role": "viewer"}, headers=owner.headers
    )
    assert_error(duplicate, 409, "conflict")
    invalid = await client.post(
        "/api/v1/tokens", json={"name": "", "role": "viewer"}, headers=owner.headers
    )
    assert_error(invalid, 422, "validation_failed")
    for path in ("/api/v1/me", "/api/v1/members", "/api/v1/tokens", "/api/v1/audit"):
        assert (await client.get(path, headers=owner.headers)).status_code == 200
    after = await rows_after(owner_engine, owner.tenant_id, before)
    assert [(row["action"], row["outcome"]) for row in after] == [("request.denied", "denied")]


async def test_long_user_agent_is_cut_to_512_characters(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/tokens",
        json={"name": "ua", "role": "viewer"},
        headers={**owner.headers, "User-Agent": "x" * 2000},
    )
    assert response.status_code == 201, response.text
    row = await _one_new_row(owner_engine, owner, before)
    assert row["user_agent"] == "x" * 512


# --- the chain ---------------------------------------------------------------------------


async def _assert_chain(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """seq is 1..n without gaps; every prev_hash is the previous hash; hashes recompute."""
    rows = await audit_rows(engine, tenant_id)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    prev = GENESIS_HASH
    for row in rows:
        assert row["prev_hash"] == prev
        event = AuditEvent.model_validate(row)
        assert event_hash(prev, event) == row["hash"]
        prev = row["hash"]
    return rows


async def test_chain_links_every_event_and_verifies(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    token = await create_api_token(client, owner, "viewer")
    await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers)
    await create_member(client, owner, "editor")
    await client.post("/api/v1/auth/login", json={"email": owner.email, "password": "nope-nope"})

    rows = await _assert_chain(owner_engine, owner.tenant_id)
    assert len(rows) >= 6
    assert len({r["hash"] for r in rows}) == len(rows)
    report = await verify(app, owner.tenant_id)
    assert report.intact
    assert report.events_checked == len(rows)
    assert report.broken_seq is None and report.reason is None


async def test_concurrent_appends_keep_the_chain_gap_free(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await head_seq(owner_engine, owner.tenant_id)
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/tokens",
                json={"name": f"parallel-{i}", "role": "viewer"},
                headers=owner.headers,
            )
            for i in range(20)
        )
    )
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]

    rows = await _assert_chain(owner_engine, owner.tenant_id)
    new = [r for r in rows if r["seq"] > before]
    assert len(new) == 20
    assert {r["action"] for r in new} == {"token.created"}
    assert {r["target_id"] for r in new} == {r.json()["id"] for r in responses}
    assert {r["request_id"] for r in new} == {r.headers["x-request-id"] for r in responses}
    report = await verify(app, owner.tenant_id)
    assert report.intact and report.events_checked == len(rows)


async def test_concurrent_appends_in_different_tenants_do_not_interfere(
    client: AsyncClient,
    app: FastAPI,
    owner: Account,
    stranger: Account,
    owner_engine: AsyncEngine,
) -> None:
    calls = [
        client.post(
            "/api/v1/tokens",
            json={"name": f"mixed-{i}", "role": "viewer"},
            headers=(owner if i % 2 else stranger).headers,
        )
        for i in range(10)
    ]
    assert all(r.status_code == 201 for r in await asyncio.gather(*calls))
    for account in (owner, stranger):
        await _assert_chain(owner_engine, account.tenant_id)
        assert (await verify(app, account.tenant_id)).intact


async def _tenant_with_events(client: AsyncClient, count: int = 3) -> Account:
    account = await create_tenant(client)
    for i in range(count):
        await create_api_token(client, account, "viewer", name=f"t{i}")
    return account


async def test_edited_row_breaks_the_chain_at_that_seq(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    account = await _tenant_with_events(client)
    assert (await verify(app, account.tenant_id)).intact
    changed = await tamper(
        owner_engine,
        "UPDATE audit_events SET action = 'token.nothing_to_see' WHERE tenant_id = :t AND seq = 3",
        t=account.tenant_id,
    )
    assert changed == 1
    report = await verify(app, account.tenant_id)
    assert not report.intact
    assert report.broken_seq == 3
    assert report.events_checked == 2
    assert report.reason == "content does not match its hash"


@pytest.mark.parametrize(
    "assignment",
    [
        "actor_id = 'someone-else'",
        "ip = '198.51.100.1'",
        "outcome = 'failure'",
        'details = \'{"name": "other", "role": "viewer"}\'::jsonb',
        "occurred_at = occurred_at + interval '1 second'",
        "target_id = NULL",
    ],
)
async def test_any_edited_field_is_detected(
    assignment: str, client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    account = await _tenant_with_events(client, count=1)
    await tamper(
        owner_engine,
        f"UPDATE audit_events SET {assignment} WHERE tenant_id = :t AND seq = 3",
        t=account.tenant_id,
    )
    report = await verify(app, account.tenant_id)
    assert report.broken_seq == 3


async def test_deleted_middle_row_breaks_the_chain_at_its_seq(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    account = await _tenant_with_events(client)
    total = await audit_count(owner_engine, account.tenant_id)
    assert total >= 5
    deleted = await tamper(
        owner_engine,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq = 3",
        t=account.tenant_id,
    )
    assert deleted == 1
    report = await verify(app, account.tenant_id)
    assert report.broken_seq == 3
    assert report.events_checked == 2
    assert report.reason == "event missing"


async def test_deleted_first_row_is_detected(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    account = await _tenant_with_events(client, count=1)
    await tamper(
        owner_engine,
        "DELETE FROM audit_events WHERE tenant_id = :t AND seq = 1",
        t=account.tenant_id,
    )
    report = await verify(app, account.tenant_id)
    assert report.broken_seq == 1
    assert report.events_checked == 0


async def test_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    """Forging a row's own hash is not enough: the next row's prev_hash still differs."""
    account = await _tenant_with_events(client)
    rows = await audit_rows(owner_engine, account.tenant_id)
    forged = AuditEvent.model_validate({**rows[2], "action": "token.forged"})
    new_hash = event_hash(rows[1]["hash"], forged)
    await tamper(
        owner_engine,
        """UPDATE audit_events SET action = 'token.forged', hash = :h
           WHERE tenant_id = :t AND seq = 3""",
        t=account.tenant_id,
        h=new_hash,
    )
    report = await verify(app, account.tenant_id)
    assert report.broken_seq == 4
    assert report.reason == "prev_hash does not match"


async def test_swapped_rows_are_detected(
    client: AsyncClient, app: FastAPI, owner_engine: AsyncEngine
) -> None:
    account = await _tenant_with_events(client)
    for source, target in ((3, -3), (4, 3), (-3, 4)):  # the primary key is not deferrable
        await tamper(
            owner_engine,
            "UPDATE audit_events SET seq = :target WHERE tenant_id = :t AND seq = :source",
            t=account.tenant_id,
            source=source,
            target=target,
        )
    report = await verify(app, account.tenant_id)
    assert report.broken_seq == 3


async def test_tampering_one_tenant_leaves_the_others_intact(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    victim = await _tenant_with_events(client, count=1)
    await tamper(
        owner_engine,
        "UPDATE audit_events SET action = 'x' WHERE tenant_id = :t AND seq = 1",
        t=victim.tenant_id,
    )
    assert (await verify(app, victim.tenant_id)).broken_seq == 1
    assert (await verify(app, owner.tenant_id)).intact


async def test_verify_chain_of_a_tenant_without_events_is_intact(app: FastAPI) -> None:
    report = await verify(app, uuid.uuid4())
    assert report.intact and report.events_checked == 0


async def test_verify_chain_walks_more_than_one_batch(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    for i in range(4):
        await create_api_token(client, owner, "viewer", name=f"batch-{i}")
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        from backend.audit.repository import AuditRepository

        seen = [e.seq async for e in AuditRepository(session, owner.tenant_id).iterate_chain(2)]
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) >= 6


# --- record() directly ---------------------------------------------------------------------


async def test_record_appends_in_the_callers_transaction_only(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    """record() only flushes: a rolled-back transaction leaves no event and no gap."""
    before = await head_seq(owner_engine, owner.tenant_id)
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        event = await record(
            session,
            tenant_id=owner.tenant_id,
            actor=Actor(type="system", label="baton"),
            action="test.rolled_back",
            origin=RequestOrigin(ip="192.0.2.1"),
        )
        assert event.seq == before + 1
        await session.rollback()
    assert await head_seq(owner_engine, owner.tenant_id) == before

    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        first = await record(
            session,
            tenant_id=owner.tenant_id,
            actor=Actor(type="system", label="baton"),
            action="test.committed",
            target_type="thing",
            target_id=uuid.UUID(int=7),
            details={"n": 1, "nested": {"b": [1, 2], "a": None}},
        )
        second = await record(
            session,
            tenant_id=owner.tenant_id,
            actor=Actor(type="system"),
            action="test.committed",
            outcome="failure",
        )
        await session.commit()
    assert (first.seq, second.seq) == (before + 1, before + 2)
    assert second.prev_hash == first.hash
    rows = await rows_after(owner_engine, owner.tenant_id, before)
    assert [r["action"] for r in rows] == ["test.committed", "test.committed"]
    assert rows[0]["target_id"] == str(uuid.UUID(int=7))
    assert rows[0]["ip"] is None and rows[0]["request_id"] is None
    assert rows[1]["outcome"] == "failure"
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        assert (await verify_chain(session, owner.tenant_id)).intact


async def test_event_hash_covers_the_previous_hash() -> None:
    event = AuditEvent(
        tenant_id=uuid.uuid4(),
        seq=1,
        actor_type="system",
        action="a",
        outcome="success",
        prev_hash=GENESIS_HASH,
        hash="",
    )
    assert event_hash(GENESIS_HASH, event) != event_hash("f" * 64, event)
    assert event_hash(GENESIS_HASH, event) == event_hash(GENESIS_HASH, event)
    assert len(event_hash(GENESIS_HASH, event)) == 64

"""The request session: commit before the response, roll back on error, after-commit hooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, cast

import jwt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message

from backend.app import create_app
from backend.audit import service as audit
from backend.core.db import (
    SessionDep,
    after_commit,
    commit,
    create_engine,
    create_sessionmaker,
    get_session,
    scope_to_tenant,
)
from backend.core.errors import Conflict, InvalidCredentials
from backend.core.principal import SYSTEM_ACTOR
from backend.core.settings import Settings
from kernel.wire import keys
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import DEFAULT_PASSWORD, Account, login, unique_email

OnStart = Callable[[], Awaitable[None]]


async def _call(
    app: FastAPI,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any] | None,
    on_response_start: OnStart,
) -> int:
    """Drive the ASGI app directly and run ``on_response_start`` the moment the response
    begins - before the app has returned, which an HTTP client cannot observe."""
    raw = json.dumps(body).encode() if body is not None else b""
    header_list = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    header_list += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": header_list,
        "client": ("203.0.113.7", 40000),
        "server": ("baton.test", 80),
        "state": {},
    }
    status: list[int] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            await on_response_start()

    await app(scope, receive, send)
    return status[0]


async def _audit_count(engine: AsyncEngine, tenant_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM audit_events WHERE tenant_id = :t"),
                    {"t": tenant_id},
                )
            ).scalar_one()
        )


async def _membership_exists(engine: AsyncEngine, tenant_id: uuid.UUID, email: str) -> bool:
    async with engine.connect() as conn:
        row = await conn.execute(
            text(
                """SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                   WHERE m.tenant_id = :t AND u.email = :e"""
            ),
            {"t": tenant_id, "e": email},
        )
        return row.first() is not None


# --- commit before the response ------------------------------------------------------------


async def test_created_member_is_readable_from_a_new_connection(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    email = unique_email("visible")
    response = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "viewer", "password": DEFAULT_PASSWORD},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert await _membership_exists(owner_engine, owner.tenant_id, email)


async def test_session_commits_before_the_response_starts(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    """A client that has its 201 must find the row from any other connection."""
    email = unique_email("early")
    seen_at_start: list[bool] = []

    async def check() -> None:
        seen_at_start.append(await _membership_exists(owner_engine, owner.tenant_id, email))

    status = await _call(
        app,
        "POST",
        "/api/v1/members",
        headers=owner.headers,
        body={"email": email, "role": "viewer", "password": DEFAULT_PASSWORD},
        on_response_start=check,
    )
    assert status == 201
    assert seen_at_start == [True], "the response started before the transaction committed"


async def test_after_commit_work_is_done_before_the_response_starts(
    app: FastAPI, client: AsyncClient, owner: Account, redis: Redis
) -> None:
    """Logout denies the access token in Redis (after commit) before answering 204."""
    session = await login(client, owner.email, owner.password)
    jti = jwt.decode(session["access_token"], options={"verify_signature": False})["jti"]
    denied_at_start: list[bool] = []

    async def check() -> None:
        denied_at_start.append(bool(await redis.exists(keys.revoked_access_token(jti))))

    status = await _call(
        app,
        "POST",
        "/api/v1/auth/logout",
        headers={"Authorization": f"Bearer {session['access_token']}"},
        body=None,
        on_response_start=check,
    )
    assert status == 204
    assert denied_at_start == [True]
    again = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {session['access_token']}"}
    )
    assert_error(again, 401, "invalid_token")


# --- roll back on error --------------------------------------------------------------------


async def test_duplicate_member_rolls_back_and_records_nothing(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    email = unique_email("dup")
    first = await client.post(
        "/api/v1/members",
        json={"email": email, "role": "viewer", "password": DEFAULT_PASSWORD},
        headers=owner.headers,
    )
    assert first.status_code == 201
    before = await _audit_count(owner_engine, owner.tenant_id)
    duplicate = await client.post(
        "/api/v1/members", json={"email": email, "role": "editor"}, headers=owner.headers
    )
    assert_error(duplicate, 409, "conflict")
    assert duplicate.json()["error"]["code"] == "conflict"
    assert await _audit_count(owner_engine, owner.tenant_id) == before
    async with owner_engine.connect() as conn:
        role = (
            await conn.execute(
                text(
                    """SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id
                       WHERE m.tenant_id = :t AND u.email = :e"""
                ),
                {"t": owner.tenant_id, "e": email},
            )
        ).scalar_one()
    assert role == "viewer"


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A separate app whose endpoints write an audit row, then succeed or fail."""
    app = create_app(settings)
    app.state.calls = []

    async def write(session: Any, tenant: uuid.UUID, action: str) -> None:
        await scope_to_tenant(session, tenant)
        await audit.record(session, tenant_id=tenant, actor=SYSTEM_ACTOR, action=action)

        async def hook() -> None:
            app.state.calls.append(action)

        after_commit(session, hook)

    @app.post("/probe/{tenant}/{outcome}")
    async def probe(tenant: uuid.UUID, outcome: str, session: SessionDep) -> dict[str, str]:
        await write(session, tenant, f"probe.{outcome}")
        if outcome == "conflict":
            raise Conflict("no")
        if outcome == "crash":
            raise RuntimeError("unexpected")
        if outcome == "kept":
            raise InvalidCredentials("kept anyway")
        return {"ok": "yes"}

    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=probe_app, client=("203.0.113.7", 40000))
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http


@pytest.mark.parametrize(
    ("outcome", "status", "kept"),
    [("ok", 200, True), ("conflict", 409, False), ("crash", 500, False), ("kept", 401, True)],
)
async def test_request_session_commits_or_rolls_back(
    outcome: str,
    status: int,
    kept: bool,
    probe: AsyncClient,
    probe_app: FastAPI,
    owner: Account,
    owner_engine: AsyncEngine,
) -> None:
    before = await _audit_count(owner_engine, owner.tenant_id)
    probe_app.state.calls.clear()
    response = await probe.post(f"/probe/{owner.tenant_id}/{outcome}")
    assert response.status_code == status, response.text
    assert await _audit_count(owner_engine, owner.tenant_id) == before + (1 if kept else 0)
    assert probe_app.state.calls == ([f"probe.{outcome}"] if kept else [])


async def test_failed_login_row_survives_the_401(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await _audit_count(owner_engine, owner.tenant_id)
    response = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": "bad-password-1"}
    )
    assert_error(response, 401, "invalid_credentials")
    assert await _audit_count(owner_engine, owner.tenant_id) == before + 1


# --- get_session / commit / after_commit directly ------------------------------------------


class _FakeRequest:
    """Just enough of a Request for ``get_session``: ``request.app.state.sessionmaker``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app


def _session_generator(app: FastAPI) -> AsyncGenerator[AsyncSession, None]:
    """``get_session`` driven by hand, the way FastAPI drives a dependency with yield."""
    return cast(
        AsyncGenerator[AsyncSession, None],
        get_session(_FakeRequest(app)),  # type: ignore[arg-type]
    )


async def test_get_session_commits_then_runs_callbacks_in_order(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await _audit_count(owner_engine, owner.tenant_id)
    order: list[str] = []

    def hook(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            # Runs after the commit: a brand-new connection already sees the row.
            order.append(f"{name}:{await _audit_count(owner_engine, owner.tenant_id) - before}")

        return run

    generator = _session_generator(app)
    session = await generator.__anext__()
    await scope_to_tenant(session, owner.tenant_id)
    await audit.record(session, tenant_id=owner.tenant_id, actor=SYSTEM_ACTOR, action="db.ok")
    after_commit(session, hook("first"))
    after_commit(session, hook("second"))
    assert order == []
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()
    assert order == ["first:1", "second:1"]


@pytest.mark.parametrize("error", [Conflict("x"), ValueError("y")])
async def test_get_session_rolls_back_and_skips_callbacks_on_error(
    error: Exception, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await _audit_count(owner_engine, owner.tenant_id)
    ran: list[bool] = []

    async def hook() -> None:
        ran.append(True)

    generator = _session_generator(app)
    session = await generator.__anext__()
    await scope_to_tenant(session, owner.tenant_id)
    await audit.record(session, tenant_id=owner.tenant_id, actor=SYSTEM_ACTOR, action="db.no")
    after_commit(session, hook)
    with pytest.raises(type(error)):
        await generator.athrow(error)
    assert ran == []
    assert await _audit_count(owner_engine, owner.tenant_id) == before


async def test_get_session_commits_side_effects_of_flagged_errors(
    app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    before = await _audit_count(owner_engine, owner.tenant_id)
    ran: list[bool] = []

    async def hook() -> None:
        ran.append(True)

    generator = _session_generator(app)
    session = await generator.__anext__()
    await scope_to_tenant(session, owner.tenant_id)
    await audit.record(session, tenant_id=owner.tenant_id, actor=SYSTEM_ACTOR, action="db.kept")
    after_commit(session, hook)
    with pytest.raises(InvalidCredentials):
        await generator.athrow(InvalidCredentials("nope"))
    assert ran == [True]
    assert await _audit_count(owner_engine, owner.tenant_id) == before + 1


async def test_callbacks_of_a_rolled_back_transaction_never_run(app: FastAPI) -> None:
    """A session reused after a rollback must not run the callbacks of the undone work."""
    ran: list[str] = []

    def hook(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)

        return run

    async with app.state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        after_commit(session, hook("undone"))
        await session.rollback()
        await session.execute(text("SELECT 1"))
        after_commit(session, hook("done"))
        await commit(session)
        assert ran == ["done"]
        await commit(session)  # callbacks run once
    assert ran == ["done"]


async def test_a_rolled_back_savepoint_keeps_the_callbacks_of_the_transaction(
    app: FastAPI,
) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append("outer")

    async with app.state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        after_commit(session, hook)
        savepoint = await session.begin_nested()
        await session.execute(text("SELECT 2"))
        await savepoint.rollback()
        await commit(session)
    assert ran == ["outer"]


async def test_callbacks_do_not_run_when_the_commit_fails(app: FastAPI, owner: Account) -> None:
    ran: list[bool] = []

    async def hook() -> None:
        ran.append(True)

    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        await session.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        await session.execute(
            text(
                """CREATE TEMP TABLE fail_at_commit (
                       id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED
                   ) ON COMMIT DROP"""
            )
        )
        await session.execute(text("INSERT INTO fail_at_commit VALUES (1), (1)"))
        after_commit(session, hook)
        with pytest.raises(Exception, match="duplicate key"):
            await commit(session)
        await session.rollback()
    assert ran == []


async def test_scope_lasts_for_the_transaction_only(app: FastAPI, owner: Account) -> None:
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, owner.tenant_id)
        scoped = (await session.execute(text("SELECT count(*) FROM memberships"))).scalar_one()
        assert scoped >= 1
        await session.commit()
        unscoped = (await session.execute(text("SELECT count(*) FROM memberships"))).scalar_one()
        assert unscoped == 0


async def test_a_pooled_connection_inside_a_stray_transaction_is_never_handed_out(
    settings: Settings, owner_engine: AsyncEngine
) -> None:
    """A connection in which asyncpg still counts a transaction of its own that SQLAlchemy
    does not track (the state of a pooled connection in a suite run that hung: every
    transaction on it was a savepoint of the stray one) is thrown away at checkout.
    Otherwise the next session's commit commits nothing and the advisory lock it took (the
    audit chain's, in that run) is never released."""
    engine = create_engine(settings.runtime_database_url(), pool_size=1, pre_ping=False)
    sessionmaker = create_sessionmaker(engine)
    key = uuid.uuid4().int % 2**62
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            server_pid = raw.driver_connection.get_server_pid()
            stray = raw.driver_connection.transaction()
            await stray.start()  # behind SQLAlchemy's back: its adapter tracks nothing
        async with sessionmaker() as session:
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            await session.commit()
        async with owner_engine.connect() as other:
            taken = await other.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            assert taken, "the committed transaction's advisory lock is still held"
            await other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            # Closed, not left idle in its stray transaction on the server.
            left = await other.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": server_pid},
            )
        assert left == 0
    finally:
        await engine.dispose()

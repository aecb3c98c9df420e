"""Liveness and readiness probes against real and unreachable backing services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.engine import make_url

from backend.app import create_app
from backend.core.settings import Settings
from kernel.metrics import REGISTRY
from tests.fixtures.statements import sent_statements

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
READ_ONLY_REDIS = {"PING", "GET", "MGET", "EXISTS", "TTL", "PTTL", "HGET", "HGETALL", "SMEMBERS"}

ClientFactory = Callable[..., Awaitable[AsyncClient]]


async def test_healthz(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_when_everything_answers(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
    assert response.headers["x-request-id"]


async def test_probes_need_no_authentication_and_write_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An app of its own, so that every statement and Redis command seen here is the probes'.
    app = create_app(settings)
    commands: list[str] = []
    async with app.router.lifespan_context(app):
        with sent_statements(app.state.engine) as sent:
            execute = app.state.redis.execute_command

            async def record_redis(*args: Any, **options: Any) -> Any:
                commands.append(str(args[0]).upper())
                return await execute(*args, **options)

            monkeypatch.setattr(app.state.redis, "execute_command", record_redis)
            transport = ASGITransport(app=app, client=("203.0.113.7", 40000))
            async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
                for path in ("/healthz", "/readyz"):
                    response = await http.get(path, headers={"Authorization": "Bearer garbage"})
                    assert response.status_code == 200, response.text
                    assert response.json()["status"] == "ok"
        statements = [s.statement for s in sent]
    # The probe was seen (the recorders work), and it only read.
    assert any(s.strip().upper() == "SELECT 1" for s in statements), statements
    assert "PING" in commands, commands
    writes = ("INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "ALTER", "DROP", "TRUNCATE")
    assert not [s for s in statements if s.lstrip().upper().startswith(writes)], statements
    assert set(commands) <= READ_ONLY_REDIS, commands


@pytest.fixture
async def client_for(settings: Settings) -> AsyncIterator[ClientFactory]:
    """Build a separate app from modified settings and yield a client for it."""
    opened: list[tuple[FastAPI, AsyncClient]] = []

    async def make(**update: object) -> AsyncClient:
        app = create_app(settings.model_copy(update=update))
        await app.router.lifespan_context(app).__aenter__()
        transport = ASGITransport(app=app, client=("203.0.113.7", 40000))
        http = AsyncClient(transport=transport, base_url="http://baton.test")
        opened.append((app, http))
        return http

    yield make
    for app, http in opened:
        await http.aclose()
        await app.state.redis.aclose()
        await app.state.engine.dispose()


async def test_readyz_without_redis_is_503_naming_redis(client_for: ClientFactory) -> None:
    http = await client_for(redis_url=UNREACHABLE_REDIS)
    response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == "service_unavailable"
    assert error["message"]
    assert error["details"]["postgres"] == "ok"
    assert error["details"]["redis"].startswith("error: ")
    assert "127.0.0.1:1" not in response.text, "connection details must not leak"
    assert response.headers["x-request-id"]

    # Liveness does not depend on the backing services.
    assert (await http.get("/healthz")).status_code == 200


async def test_readyz_without_postgres_is_503_naming_postgres(
    client_for: ClientFactory, settings: Settings
) -> None:
    assert settings.database_url
    # Nothing listens on port 1, wherever the test database is (TCP or a socket directory).
    unreachable = (
        make_url(settings.database_url)
        .set(host="127.0.0.1", port=1)
        .difference_update_query(["host"])
        .render_as_string(hide_password=False)
    )
    http = await client_for(database_url=unreachable)
    response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    details = response.json()["error"]["details"]
    assert details["postgres"].startswith("error: ")
    assert details["redis"] == "ok"


async def test_readyz_with_a_refused_postgres_login_is_503(
    client_for: ClientFactory, settings: Settings
) -> None:
    """The server answers but refuses the connection (here: no such database)."""
    assert settings.database_url
    refused = (
        make_url(settings.database_url)
        .set(username="baton_app", password="secret-pw", database="no_such_database_here")
        .render_as_string(hide_password=False)
    )
    http = await client_for(app_database_url=refused)
    response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    details = response.json()["error"]["details"]
    assert details["postgres"].startswith("error: ")
    assert details["redis"] == "ok"
    assert "secret-pw" not in response.text and "no_such_database" not in response.text


async def test_readyz_names_the_missing_dependency_and_moves_its_metric(
    client_for: ClientFactory, client: AsyncClient
) -> None:
    # Up first: an outage an earlier test left open would not count again.
    assert (await client.get("/readyz")).status_code == 200
    outages = _sample("baton_dependency_outages_total")
    http = await client_for(redis_url=UNREACHABLE_REDIS)
    response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["message"].endswith(": redis")
    assert _sample("baton_dependency_up") == 0
    assert _sample("baton_dependency_outages_total") == outages + 1
    # The next probe that reaches Redis marks it up again.
    assert (await client.get("/readyz")).status_code == 200
    assert _sample("baton_dependency_up") == 1


def _sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name, {"dependency": "redis"})
    assert value is not None, name
    return value

"""One error shape for every failure, request ids on every response, the body size cap."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from starlette.types import Message

from backend.app import create_app
from backend.core.db import SessionDep
from backend.core.errors import Conflict
from backend.core.settings import Settings
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import DEFAULT_PASSWORD, Account, unique_email

SIGNUP = "/api/v1/auth/signup"
MAX_BODY = 1_048_576
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def _signup_body(**override: Any) -> dict[str, Any]:
    return {
        "email": unique_email("errors"),
        "password": DEFAULT_PASSWORD,
        "tenant_name": "Errors Org",
        **override,
    }


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b'{"email": "a@example.com", ', b"not json at all", b"{'single': 'quotes'}", b"\xff\xfe"],
)
async def test_malformed_json_is_422(content: bytes, client: AsyncClient) -> None:
    response = await client.post(
        SIGNUP, content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["loc"][0] == "body"


async def test_json_that_is_not_an_object_is_422(client: AsyncClient) -> None:
    payloads: list[object] = [[], "text", 42, None]
    for payload in payloads:
        response = await client.post(SIGNUP, json=payload)
        assert_error(response, 422, "validation_failed")


async def test_wrong_types_are_422_with_loc_paths(client: AsyncClient) -> None:
    response = await client.post(
        SIGNUP, json={"email": 5, "password": ["x"], "tenant_name": {"a": 1}}
    )
    error = assert_error(response, 422, "validation_failed")
    locs = {tuple(d["loc"]) for d in error["details"]}
    assert {("body", "email"), ("body", "password"), ("body", "tenant_name")} <= locs
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg", "type"}
        assert detail["msg"] and detail["type"]


async def test_missing_fields_are_422(client: AsyncClient) -> None:
    response = await client.post(SIGNUP, json={"email": "x@example.com"})
    error = assert_error(response, 422, "validation_failed")
    missing = {tuple(d["loc"]) for d in error["details"] if d["type"] == "missing"}
    assert missing == {("body", "password"), ("body", "tenant_name")}


async def test_missing_body_is_422(client: AsyncClient) -> None:
    response = await client.post(SIGNUP)
    assert_error(response, 422, "validation_failed")


async def test_unknown_fields_are_422(client: AsyncClient) -> None:
    response = await client.post(SIGNUP, json=_signup_body(is_superuser=True))
    error = assert_error(response, 422, "validation_failed")
    assert [(d["loc"], d["type"]) for d in error["details"]] == [
        (["body", "is_superuser"], "extra_forbidden")
    ]


async def test_invalid_path_parameter_is_422(client: AsyncClient, owner: Account) -> None:
    response = await client.delete("/api/v1/tokens/not-a-uuid", headers=owner.headers)
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["path", "token_id"]


async def test_validation_errors_do_not_echo_the_input(client: AsyncClient) -> None:
    """Details carry loc/msg/type only: a rejected password is never sent back."""
    secret = "hunter2-" * 200
    response = await client.post(SIGNUP, json=_signup_body(password=secret))
    assert_error(response, 422, "validation_failed")
    assert "hunter2" not in response.text


# --- body size ----------------------------------------------------------------------------


async def test_body_over_the_limit_with_content_length_is_413(client: AsyncClient) -> None:
    content = b"x" * (MAX_BODY + 1)
    response = await client.post(
        SIGNUP, content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_declared_length_over_the_limit_is_refused_on_any_route(
    client: AsyncClient,
) -> None:
    response = await client.post("/no/such/route", content=b"x" * (MAX_BODY + 10))
    assert_error(response, 413, "payload_too_large")


async def _stream(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        sent += size
        yield b"x" * size


async def test_streamed_body_over_the_limit_is_413(client: AsyncClient) -> None:
    response = await client.post(
        SIGNUP, content=_stream(2 * MAX_BODY), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "payload_too_large")


async def test_streamed_body_over_the_limit_on_an_authenticated_route_is_413(
    client: AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/api/v1/tokens",
        content=_stream(MAX_BODY + 1),
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


async def test_body_at_the_limit_is_accepted_for_parsing(client: AsyncClient) -> None:
    """Exactly max_request_bytes is allowed through (and then fails validation)."""
    for content in (b" " * MAX_BODY, _stream(MAX_BODY)):
        response = await client.post(
            SIGNUP, content=content, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 422, "validation_failed")


# --- routing errors -------------------------------------------------------------------------


async def test_unknown_route_is_404(client: AsyncClient) -> None:
    response = await client.get("/api/v1/does-not-exist")
    assert_error(response, 404, "not_found")


async def test_wrong_method_is_405(client: AsyncClient) -> None:
    response = await client.put("/healthz")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    response = await client.get(SIGNUP)
    assert_error(response, 405, "method_not_allowed")


async def test_domain_errors_use_the_shape(client: AsyncClient, owner: Account) -> None:
    unauthenticated = await client.get("/api/v1/me")
    assert_error(unauthenticated, 401, "unauthenticated")
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    duplicate = await client.post(
        "/api/v1/members", json={"email": owner.email, "role": "viewer"}, headers=owner.headers
    )
    assert_error(duplicate, 409, "conflict")
    missing = await client.delete(
        "/api/v1/tokens/00000000-0000-0000-0000-000000000000", headers=owner.headers
    )
    assert_error(missing, 404, "not_found")


# --- request ids ----------------------------------------------------------------------------


async def test_every_response_carries_a_request_id(client: AsyncClient, owner: Account) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get("/api/v1/me", headers=owner.headers),
        await client.get("/api/v1/me"),
        await client.get("/nowhere"),
        await client.post(SIGNUP, json={}),
        await client.post(SIGNUP, content=b"x" * (MAX_BODY + 1)),
        await client.post(SIGNUP, content=_stream(MAX_BODY + 1)),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert all(GENERATED_ID.fullmatch(i) for i in ids if i)
    assert len(set(ids)) == len(ids)
    for response in responses:
        assert len(response.headers.get_list("x-request-id")) == 1


@pytest.mark.parametrize(
    "request_id", ["abcdefgh", "req-2024.01_ABC", "0123456789abcdef" * 4, "f" * 32]
)
async def test_safe_incoming_request_id_is_echoed(request_id: str, client: AsyncClient) -> None:
    for path in ("/healthz", "/nowhere"):
        response = await client.get(path, headers={"X-Request-ID": request_id})
        assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "has spaces in it",
        "x" * 65,
        "short",
        "",
        "abc<script>alert(1)</script>",
        "semi;colon;value",
        "a/b/c/d/e/f/g",
    ],
)
async def test_unsafe_incoming_request_id_is_replaced(request_id: str, client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] != request_id
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def _raw_request(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    """Call the ASGI app directly, for header values an HTTP client would refuse to send."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 40000),
        "server": ("baton.test", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    "value", [b"abcdefgh\n", b"abcdefgh\r\nSet-Cookie: x=1", b"abcdefgh\x00", b"\nabcdefgh"]
)
async def test_request_id_with_control_characters_is_replaced(value: bytes, app: FastAPI) -> None:
    messages = await _raw_request(app, [(b"x-request-id", value)])
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 200
    ids = [v for k, v in start["headers"] if k.lower() == b"x-request-id"]
    assert len(ids) == 1
    assert GENERATED_ID.fullmatch(ids[0].decode())


# --- unexpected exceptions ------------------------------------------------------------------


@pytest.fixture
async def fragile_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A separate app instance with endpoints that fail in ways the real ones must not."""
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/boom-in-transaction")
    async def boom_in_transaction(session: SessionDep) -> None:
        raise KeyError("while holding a session")

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("Busy", details={"retry": True})

    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def fragile(fragile_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=fragile_app, client=("203.0.113.7", 40000))
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http


@pytest.mark.parametrize("path", ["/boom", "/boom-in-transaction"])
async def test_unexpected_exception_is_a_500_in_the_error_shape(
    path: str, fragile: AsyncClient
) -> None:
    response = await fragile.get(path, headers={"X-Request-ID": "trace-me-please"})
    error = assert_error(response, 500, "internal_error")
    assert error["message"] == "Internal server error"
    assert error["details"] is None
    assert response.headers["x-request-id"] == "trace-me-please"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert len(response.headers.get_list("x-request-id")) == 1


async def test_unexpected_exception_does_not_break_the_next_request(
    fragile: AsyncClient,
) -> None:
    for _ in range(2):
        assert (await fragile.get("/boom-in-transaction")).status_code == 500
    assert (await fragile.get("/readyz")).status_code == 200


async def test_baton_error_details_are_rendered(fragile: AsyncClient) -> None:
    response = await fragile.get("/conflict")
    error = assert_error(response, 409, "conflict")
    assert error == {"code": "conflict", "message": "Busy", "details": {"retry": True}}


@pytest.mark.parametrize("broken", ["redis", "postgres"])
async def test_unreachable_backing_service_is_a_503_not_a_500(
    broken: str, settings: Settings
) -> None:
    update: dict[str, Any] = {"redis_url": "redis://127.0.0.1:1/0"}
    if broken == "postgres":
        update = {"app_database_url": "postgresql://nobody@127.0.0.1:1/nothing"}
    app = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
            response = await http.post(
                "/api/v1/auth/login", json={"email": unique_email(), "password": "whatever-pass"}
            )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["x-request-id"]

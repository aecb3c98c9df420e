"""The input policy, swept over every route (found from the app, so new routes are included).

- Every operation with a JSON body gets bodies with NaN, Infinity, a number that parses as
  infinity, NUL in a value and in a key, lone surrogates, nesting past the limit (and past
  the parser's), a huge integer, and a body over the size cap; YAML bodies get YAML forms
  of the same. Each answer is the one error shape, a 422 naming the policy's problem at a
  ``body`` location (413 for the cap) - and no row in any table changed.
- Every operation's query string (its own parameters and an unknown one) with NUL, an
  encoded surrogate and invalid UTF-8: a 422 at a ``query`` location, nothing changed.
- The dashboard's forms and pages: the same refusals, as HTML pages.

The paths name the caller's own objects, so the policy is what answers, not a 404.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.input_policy import MAX_DEPTH
from backend.core.settings import Settings
from backend.web.render import is_dashboard_request
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_api_token, create_member

try:  # FastAPI >= 0.16x wraps included routers; this walks them.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists the routes flat
    iter_route_contexts = None


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# (name, raw body, the policy's problem type)
JSON_POISON = [
    ("nan", '{"a": NaN}', "float_finite"),
    ("infinity", '{"a": [Infinity]}', "float_finite"),
    ("-infinity", '{"a": {"b": -Infinity}}', "float_finite"),
    ("overflow to infinity", '{"a": 1e999}', "float_finite"),
    ("nul", '{"a": "x\\u0000y"}', "string_nul"),
    ("nul key", '{"a\\u0000": 1}', "string_nul"),
    ("lone surrogate", '{"a": "\\ud800"}', "string_surrogate"),
    ("lone low surrogate key", '{"\\udc00": 1}', "string_surrogate"),
    ("too deep", json.dumps({"a": _nested(MAX_DEPTH)}), "too_deep"),
    ("too deep to parse", "[" * 100_000 + "]" * 100_000, "too_deep"),
    ("huge integer", '{"a": ' + "9" * 40 + "}", "int_range"),
]
# YAML bodies are decoded by the job spec parser, which applies the same policy.
YAML_POISON = [
    ("nan", "a: .nan\n", "float_finite"),
    ("infinity", "a: [-.inf]\n", "float_finite"),
    ("nul", 'a: "x\\0y"\n', "string_nul"),
    ("lone surrogate", 'a: "\\ud800"\n', "string_surrogate"),
    ("too deep", json.dumps({"a": _nested(MAX_DEPTH)}) + "\n", "too_deep"),
]
QUERY_POISON = [
    ("nul", "%00", "string_nul"),
    ("nul in text", "ab%00cd", "string_nul"),
    ("encoded surrogate", "%ED%A0%80", "unicode_invalid"),
    ("invalid utf-8", "%FF%FE", "unicode_invalid"),
]
URLENCODED = "application/x-www-form-urlencoded"
BOUNDARY = "sweep"
MULTIPART_NUL = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\na\x00b\r\n'
    f"--{BOUNDARY}--\r\n"
).encode()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    media_types: tuple[str, ...]
    query: tuple[str, ...]

    def url(self, own: dict[str, str]) -> str:
        url = self.path
        for name, value in own.items():
            url = url.replace("{" + name + "}", value)
        assert "{" not in url, f"{self}: no object for {url}; add one to _own_objects"
        return url

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(app: FastAPI) -> list[Operation]:
    """Every documented operation, with its body media types and query parameters."""
    found = []
    for path, items in app.openapi()["paths"].items():
        for method, operation in items.items():
            content = operation.get("requestBody", {}).get("content", {})
            query = tuple(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
            found.append(Operation(method.upper(), path, tuple(content), query))
    # Destructive calls last: one that wrongly succeeds cannot hide the others.
    return sorted(found, key=lambda op: (op.method == "DELETE", op.path))


def dashboard_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of the dashboard's own routes (not in the OpenAPI schema)."""
    routes: list[Any] = (
        list(iter_route_contexts(app.routes)) if iter_route_contexts else list(app.routes)
    )
    for route in routes:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", "")
        if not isinstance(original, APIRoute) or path.startswith("/api/"):
            continue
        if original.include_in_schema or not is_dashboard_request(path, ""):
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, path


async def _own_objects(client: AsyncClient, owner: Account) -> dict[str, str]:
    spec = {
        "name": f"sweep-{uuid.uuid4().hex[:8]}",
        "schedule": {"cron": "0 0 1 1 *"},
        "tasks": [{"name": "noop", "type": "python", "function": "worker.builtins:noop"}],
    }
    job = await client.post("/api/v1/jobs", json=spec, headers=owner.headers)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    run = await client.post(
        f"/api/v1/jobs/{job_id}/runs", json={"delay_seconds": 3600}, headers=owner.headers
    )
    assert run.status_code == 201, run.text
    secret_name = f"SWEEP_{uuid.uuid4().hex[:12].upper()}"
    secret = await client.post(
        "/api/v1/secrets", json={"name": secret_name, "value": "sweep"}, headers=owner.headers
    )
    assert secret.status_code == 201, secret.text
    credential = await client.post(
        "/api/v1/workers/credentials",
        json={"queue": f"sweep-{uuid.uuid4().hex[:8]}", "name": "sweep"},
        headers=owner.headers,
    )
    assert credential.status_code == 201, credential.text
    template_name = f"sweep-{uuid.uuid4().hex[:8]}"
    template = await client.post(
        "/api/v1/templates", json={"name": template_name, "job_id": job_id}, headers=owner.headers
    )
    assert template.status_code == 201, template.text
    invitation = await client.post(
        "/api/v1/invitations",
        json={"email": f"sweep-{uuid.uuid4().hex[:8]}@example.com", "role": "viewer"},
        headers=owner.headers,
    )
    assert invitation.status_code == 201, invitation.text
    webhook = await client.post(
        f"/api/v1/jobs/{job_id}/webhooks", json={"name": "sweep"}, headers=owner.headers
    )
    assert webhook.status_code == 201, webhook.text
    channel = await client.post(
        "/api/v1/notification-channels",
        json={"name": "sweep", "kind": "slack", "url_secret": secret_name},
        headers=owner.headers,
    )
    assert channel.status_code == 201, channel.text
    rule = await client.post(
        "/api/v1/notification-rules",
        json={"channel_id": channel.json()["id"], "events": ["failure"]},
        headers=owner.headers,
    )
    assert rule.status_code == 201, rule.text
    return {
        "channel_id": str(channel.json()["id"]),
        "rule_id": str(rule.json()["id"]),
        "endpoint_id": str(webhook.json()["id"]),
        "token": webhook.json()["token"],
        "invitation_id": str(invitation.json()["id"]),
        "template_name": template_name,
        "secret_name": secret_name,
        "credential_id": str(credential.json()["id"]),
        "job_id": job_id,
        "run_id": run.json()["id"],
        "user_id": str((await create_member(client, owner, "viewer")).user_id),
        "token_id": str((await create_api_token(client, owner, "viewer"))["id"]),
        "tenant_id": str(owner.tenant_id),
        # A name no plan has: a PUT that wrongly succeeded would create, not change, a plan.
        "plan_name": f"sweep-{uuid.uuid4().hex[:8]}",
    }


async def row_counts(engine: AsyncEngine, tenant_id: uuid.UUID) -> dict[str, int]:
    """Rows of the tenant in every table that has a ``tenant_id``, and all rows of the
    platform tables a signup writes (as the database owner: row-level security aside).
    Other tenants' rows are left out: a scheduler another test left running may add some.
    One snapshot for every count (REPEATABLE READ): the audit sealer moves rows from
    ``audit_pending`` into ``audit_events`` meanwhile, and counted a table at a time a
    moved row could be seen twice or not at all."""
    async with engine.connect() as conn, conn.begin():
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        scoped = (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.columns WHERE "
                    "table_schema = 'public' AND column_name = 'tenant_id' ORDER BY table_name"
                )
            )
        ).scalars()
        counts = {}
        for table in list(scoped):
            counts[table] = (
                await conn.execute(
                    text(f'SELECT count(*) FROM "{table}" WHERE tenant_id = :t'), {"t": tenant_id}
                )
            ).scalar()
        for table in ("tenants", "users"):
            counts[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    assert {"jobs", "runs", "task_runs", "api_tokens", "memberships", "audit_events"} <= set(counts)
    found = {name: int(count or 0) for name, count in counts.items()}
    # An audit event is appended pending and sealed into the chain later, off the request
    # path (docs/architecture.md, "Audit"): a seal during the sweep moves a row, it is no
    # write of the sweep's. Counted once, wherever it is.
    found["audit_events"] += found.pop("audit_pending", 0)
    return found


def _policy_refusal(response: Response, type_: str, location: str) -> str | None:
    """Why ``response`` is not the policy's 422 for ``type_`` at ``location``, if it is not."""
    if response.status_code >= 500:
        return f"a {response.status_code}"
    try:
        error = assert_error(response, 422, "validation_failed")
    except AssertionError as failure:
        return f"not the 422 error shape: {failure}"
    first = error["details"][0]
    if first["type"] != type_ or not first["loc"] or first["loc"][0] != location:
        return f"another problem than the policy's {type_} at {location}: {first}"
    return None


async def test_the_sweep_finds_the_body_routes(app: FastAPI) -> None:
    with_body = {str(op) for op in operations(app) if op.media_types}
    assert {
        "POST /api/v1/auth/signup",
        "POST /api/v1/tokens",
        "POST /api/v1/jobs",
        "PUT /api/v1/jobs/{job_id}",
        "POST /api/v1/jobs/{job_id}/runs",
        "POST /api/v1/jobs/{job_id}/runs/batch",
        "PATCH /api/v1/members/{user_id}",
    } <= with_body
    assert {str(op) for op in operations(app) if "application/yaml" in op.media_types} == {
        "POST /api/v1/jobs",
        "PUT /api/v1/jobs/{job_id}",
    }


async def test_every_json_body_refuses_what_the_policy_refuses(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    own = await _own_objects(client, owner)
    before = await row_counts(owner_engine, owner.tenant_id)
    failures = []
    swept = 0
    for op in operations(app):
        if "application/json" not in op.media_types:
            continue
        for name, body, type_ in JSON_POISON:
            response = await client.request(
                op.method,
                op.url(own),
                content=body.encode("utf-8", "surrogatepass"),
                headers={**owner.headers, "Content-Type": "application/json"},
            )
            swept += 1
            if problem := _policy_refusal(response, type_, "body"):
                failures.append(f"{op} with {name}: {problem}")
    assert swept > 50
    assert failures == [], "\n".join(failures)
    assert await row_counts(owner_engine, owner.tenant_id) == before


async def test_every_yaml_body_refuses_what_the_policy_refuses(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    own = await _own_objects(client, owner)
    before = await row_counts(owner_engine, owner.tenant_id)
    failures = []
    for op in operations(app):
        if "application/yaml" not in op.media_types:
            continue
        for name, body, type_ in YAML_POISON:
            response = await client.request(
                op.method,
                op.url(own),
                content=body.encode(),
                headers={**owner.headers, "Content-Type": "application/yaml"},
            )
            # The spec parser locates problems from the document's root.
            error = response.json().get("error", {}) if response.status_code == 422 else {}
            details = error.get("details") or [{}]
            if response.status_code != 422 or details[0].get("type") != type_:
                failures.append(f"{op} with YAML {name}: {response.status_code} {response.text}")
    assert failures == [], "\n".join(failures)
    assert await row_counts(owner_engine, owner.tenant_id) == before


async def test_every_body_over_the_cap_is_413(
    client: AsyncClient,
    app: FastAPI,
    owner: Account,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    own = await _own_objects(client, owner)
    before = await row_counts(owner_engine, owner.tenant_id)
    oversize = json.dumps({"a": "x" * settings.max_request_bytes}).encode()
    for op in operations(app):
        if not op.media_types:
            continue
        response = await client.request(
            op.method,
            op.url(own),
            content=oversize,
            headers={**owner.headers, "Content-Type": op.media_types[0]},
        )
        assert_error(response, 413, "payload_too_large")
    assert await row_counts(owner_engine, owner.tenant_id) == before


async def test_every_query_string_refuses_what_the_policy_refuses(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    own = await _own_objects(client, owner)
    before = await row_counts(owner_engine, owner.tenant_id)
    failures = []
    for op in operations(app):
        for parameter in (*op.query, "unknown"):
            for name, value, type_ in QUERY_POISON:
                response = await client.request(
                    op.method, f"{op.url(own)}?{parameter}={value}", headers=owner.headers
                )
                if problem := _policy_refusal(response, type_, "query"):
                    failures.append(f"{op} ?{parameter}= {name}: {problem}")
    assert failures == [], "\n".join(failures)
    assert await row_counts(owner_engine, owner.tenant_id) == before


async def test_the_dashboard_refuses_the_same_input_as_html(
    client: AsyncClient, app: FastAPI, owner: Account, owner_engine: AsyncEngine
) -> None:
    own = {**await _own_objects(client, owner), "version": "1", "task": "noop"}
    own["name"] = own["template_name"]  # the dashboard gallery names its template {name}
    before = await row_counts(owner_engine, owner.tenant_id)
    routes = list(dashboard_routes(app))
    assert any(method == "POST" for method, _ in routes), "no dashboard form found"
    failures = []
    for method, path in routes:
        url = path
        for name, value in own.items():
            url = url.replace("{" + name + "}", value)
        if "{" in url:
            failures.append(f"{method} {path}: no object for its path")
            continue
        attempts: list[tuple[str, bytes | None, str]] = [(f"{url}?q=%00", None, "")]
        if method == "POST":
            attempts.append((url, b"csrf_token=x&name=a%00b", URLENCODED))
            attempts.append((url, b"name=%ED%A0%80", URLENCODED))
            attempts.append((url, MULTIPART_NUL, f"multipart/form-data; boundary={BOUNDARY}"))
        for target, form, media_type in attempts:
            response = await client.request(
                method, target, content=form, headers={"Content-Type": media_type} if form else {}
            )
            html = response.headers.get("content-type", "").startswith("text/html")
            if response.status_code != 422 or not html:
                failures.append(f"{method} {target} {form!r}: {response.status_code}")
    assert failures == [], "\n".join(failures)
    assert await row_counts(owner_engine, owner.tenant_id) == before

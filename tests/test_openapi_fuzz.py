"""Schemathesis over /openapi.json: every documented operation, fuzzed from its own schema,
against the real app behind a real server (PostgreSQL and Redis included).

Each operation gets a fixed, small number of generated requests, derandomized so a run is
repeatable and quick: valid data (positive), invalid data (negative), and - for routes
with an id in the path - valid data aimed at the owner's own objects, so the request gets
past the 404. All are sent with the bearer token of an owner who is also a platform
administrator (so admin routes are exercised past their guard). Every answer must:

- not be a server error (no 5xx);
- have a status the schema lists for that operation, the content type it lists, and a
  body that matches the listed schema (the error shape included).

Server-Sent Events routes are left out: a permitted request streams until the client
leaves (tests/events covers them). Deletes run late (they remove the objects others aim
at) and logout last, since it ends the session.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import requests
import schemathesis
from fastapi import FastAPI
from httpx import AsyncClient
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Account, create_api_token, create_member, make_superuser

MAX_EXAMPLES = 8
STREAMS = {"GET /api/v1/events", "GET /api/v1/runs/{run_id}/logs/stream"}
LAST = "POST /api/v1/auth/logout"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _operations(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    chosen = [op for op in operations if op.label not in STREAMS]
    return sorted(
        chosen, key=lambda op: (op.label == LAST, op.label.startswith("DELETE"), op.label)
    )


async def _own_objects(client: AsyncClient, owner: Account) -> dict[str, str]:
    """An object of each kind a path names, in the owner's tenant."""
    spec = {
        "name": "fuzz-target",
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
    return {
        "job_id": job_id,
        "run_id": run.json()["id"],
        "user_id": str((await create_member(client, owner, "viewer")).user_id),
        "token_id": str((await create_api_token(client, owner, "viewer"))["id"]),
        "tenant_id": str(owner.tenant_id),
    }


def _strategies(operation: Any, own: dict[str, str]) -> list[Any]:
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.body or any(True for _ in operation.iter_parameters()):
        # Nothing to make invalid in an operation without input.
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    names = [p.name for p in operation.path_parameters]
    if names and all(name in own for name in names):
        path = {name: own[name] for name in names}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path))
    return strategies


def _fuzz_all(
    operation: Any, base_url: str, headers: dict[str, str], own: dict[str, str]
) -> list[str]:
    failures = []
    for strategy in _strategies(operation, own):
        if failure := _fuzz(operation, strategy, base_url, headers):
            failures.append(failure)
    return failures


def _fuzz(operation: Any, strategy: Any, base_url: str, headers: dict[str, str]) -> str | None:
    """Runs the strategy's examples; the first failure's description, or None."""
    session = requests.Session()

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Exception as failure:  # noqa: BLE001  (any failed check, reported per operation)
        return f"{operation.label}: {type(failure).__name__}: {failure}"
    finally:
        session.close()
    return None


def test_the_fuzzer_reaches_every_operation_but_streams(app: FastAPI) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented >= STREAMS
    assert {op.label for op in _operations(app)} == documented - STREAMS


async def test_every_operation_answers_as_documented(
    app: FastAPI, server: str, client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    await make_superuser(owner_engine, owner)
    own = await _own_objects(client, owner)
    failures = []
    for operation in _operations(app):
        # In a thread: the server answers on this event loop meanwhile.
        failures += await asyncio.to_thread(_fuzz_all, operation, server, owner.headers, own)
    assert failures == [], "\n\n".join(failures)

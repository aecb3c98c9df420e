"""Guards on every API route, checked by walking the application's routes.

- Every ``/api/v1`` route except the public auth ones depends on ``Authorized(...)`` (or,
  under ``/api/v1/admin``, on the superuser dependency): adding an unguarded route fails here.
- At run time: no credentials answer 401, a role below the route's permission answers 403.
- Cross-tenant sweep: every route with an id in its path answers 404 to another tenant's
  owner for that tenant's objects, and no list leaks another tenant's identifiers.

A new route with a new kind of id needs an entry in ``ID_FACTORIES`` (and a valid body in
``BODIES`` if it takes one); the sweep fails with that instruction until it has one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from backend.core.deps import get_superuser
from backend.core.permissions import MINIMUM_ROLE, Permission, Role
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, bearer, create_api_token, create_member
from tests.fixtures.routes import Endpoint, dependency_calls, endpoints

API_PREFIX = "/api/v1/"
ADMIN_PREFIX = "/api/v1/admin/"
PUBLIC_ROUTES = {
    ("POST", "/api/v1/auth/signup"),
    ("POST", "/api/v1/billing/stripe/webhook"),  # verified by Stripe's signature
    # A mailed single-use token is the credential.
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("POST", "/api/v1/auth/invitations/accept"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
}


def api_endpoints(app: FastAPI) -> list[Endpoint]:
    return [e for e in endpoints(app) if e.path.startswith(API_PREFIX)]


def guarded_endpoints(app: FastAPI) -> list[Endpoint]:
    return [e for e in api_endpoints(app) if (e.method, e.path) not in PUBLIC_ROUTES]


def required_permissions(endpoint: Endpoint) -> set[Permission]:
    assert endpoint.dependant is not None
    return {
        call.required_permission
        for call in dependency_calls(endpoint.dependant)
        if hasattr(call, "required_permission")
    }


def needs_superuser(endpoint: Endpoint) -> bool:
    assert endpoint.dependant is not None
    return any(call is get_superuser for call in dependency_calls(endpoint.dependant))


# ------------------------------------------------------------------------- static checks


def test_the_route_walk_finds_the_known_routes(app: FastAPI) -> None:
    found = {(e.method, e.path) for e in api_endpoints(app)}
    expected = PUBLIC_ROUTES | {
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/members"),
        ("POST", "/api/v1/members"),
        ("PATCH", "/api/v1/members/{user_id}"),
        ("DELETE", "/api/v1/members/{user_id}"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{token_id}"),
        ("POST", "/api/v1/secrets"),
        ("GET", "/api/v1/secrets"),
        ("GET", "/api/v1/secrets/{secret_name}"),
        ("PATCH", "/api/v1/secrets/{secret_name}"),
        ("DELETE", "/api/v1/secrets/{secret_name}"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/admin/tenants"),
        ("POST", "/api/v1/auth/logout"),
    }
    assert expected <= found, f"the walk missed {expected - found}"
    assert all(e.dependant is not None for e in api_endpoints(app))


def test_every_api_route_is_a_fastapi_route(app: FastAPI) -> None:
    """A raw Starlette route or mount under /api/v1 could not declare ``Authorized``."""
    assert [str(e) for e in api_endpoints(app) if not e.is_api_route] == []


def test_every_non_public_api_route_is_authorized(app: FastAPI) -> None:
    unguarded = [
        str(e)
        for e in guarded_endpoints(app)
        if not required_permissions(e) and not needs_superuser(e)
    ]
    assert unguarded == [], f"routes without Authorized(...): {unguarded}"


def test_admin_routes_need_a_superuser(app: FastAPI) -> None:
    admin = [e for e in guarded_endpoints(app) if e.path.startswith(ADMIN_PREFIX)]
    assert admin, "no admin routes found"
    assert [str(e) for e in admin if not needs_superuser(e)] == []


def test_tenant_routes_use_the_permission_table_not_the_superuser_flag(app: FastAPI) -> None:
    tenant_routes = [e for e in guarded_endpoints(app) if not e.path.startswith(ADMIN_PREFIX)]
    assert [str(e) for e in tenant_routes if needs_superuser(e)] == []
    for endpoint in tenant_routes:
        permissions = required_permissions(endpoint)
        assert len(permissions) == 1, f"{endpoint}: {permissions}"
        assert permissions <= set(MINIMUM_ROLE)


def test_public_routes_exist_and_need_no_permission(app: FastAPI) -> None:
    public = [e for e in api_endpoints(app) if (e.method, e.path) in PUBLIC_ROUTES]
    assert {(e.method, e.path) for e in public} == PUBLIC_ROUTES
    assert [str(e) for e in public if required_permissions(e) or needs_superuser(e)] == []


def test_openapi_lists_the_same_api_routes(app: FastAPI) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(API_PREFIX)
        for method in operations
    }
    walked = {(e.method, e.path) for e in api_endpoints(app)}
    assert documented <= walked, f"documented but not walked: {documented - walked}"


# ----------------------------------------------------------------------- run-time checks


def _placeholder_url(endpoint: Endpoint) -> str:
    return endpoint.url({name: str(uuid.uuid4()) for name in endpoint.params})


async def test_every_guarded_route_answers_401_without_credentials(
    client: AsyncClient, app: FastAPI
) -> None:
    failures = []
    for endpoint in guarded_endpoints(app):
        url = _placeholder_url(endpoint)
        for headers in ({}, bearer("not-a-token"), bearer("bat_" + "0" * 32 + "_" + "x" * 43)):
            response = await client.request(endpoint.method, url, headers=headers)
            if response.status_code != 401:
                failures.append(f"{endpoint} {headers}: {response.status_code}")
            elif response.json()["error"]["code"] not in {"unauthenticated", "invalid_token"}:
                failures.append(f"{endpoint}: {response.text}")
    assert failures == []


async def test_roles_below_a_routes_permission_get_403(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    accounts = {Role.owner: owner}
    for role in (Role.admin, Role.editor, Role.operator, Role.viewer):
        accounts[role] = await create_member(client, owner, role.value)
    failures = []
    for endpoint in guarded_endpoints(app):
        url = _placeholder_url(endpoint)
        if needs_superuser(endpoint):
            denied = list(Role)  # no tenant role is a platform administrator
            allowed: list[Role] = []
        else:
            (permission,) = required_permissions(endpoint)
            minimum = MINIMUM_ROLE[permission]
            denied = [r for r in Role if not r.at_least(minimum)]
            # Only reads are replayed with a sufficient role (no side effects); an event
            # stream never ends, so it is not (tests/events covers who may read it).
            allowed = [minimum] if endpoint.method == "GET" and endpoint.path not in STREAMS else []
        for role in denied:
            response = await client.request(endpoint.method, url, headers=accounts[role].headers)
            if response.status_code != 403 or response.json()["error"]["code"] != "forbidden":
                failures.append(f"{endpoint} as {role}: {response.status_code}")
        for role in allowed:
            response = await client.request(endpoint.method, url, headers=accounts[role].headers)
            if response.status_code in (401, 403):
                failures.append(f"{endpoint} as {role}: {response.status_code}")
    assert failures == []


# ------------------------------------------------------------------- cross-tenant sweep

IdFactory = Callable[[AsyncClient, Account], Awaitable[str]]


async def _member(client: AsyncClient, account: Account) -> str:
    return str((await create_member(client, account, "editor")).user_id)


async def _api_token(client: AsyncClient, account: Account) -> str:
    return str((await create_api_token(client, account, "viewer"))["id"])


async def _secret(client: AsyncClient, account: Account) -> str:
    name = f"SWEEP_{uuid.uuid4().hex[:12].upper()}"
    response = await client.post(
        "/api/v1/secrets", json={"name": name, "value": "sweep"}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return name


def _job_spec() -> dict[str, Any]:
    return {
        "name": f"sweep-{uuid.uuid4().hex[:8]}",
        "schedule": {"cron": "0 0 1 1 *"},  # so the schedule routes have one to find
        "tasks": [{"name": "noop", "type": "python", "function": "worker.builtins:noop"}],
    }


async def _worker_credential(client: AsyncClient, account: Account) -> str:
    body = {"queue": f"sweep-{uuid.uuid4().hex[:8]}", "name": "sweep"}
    response = await client.post("/api/v1/workers/credentials", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _job(client: AsyncClient, account: Account) -> str:
    response = await client.post("/api/v1/jobs", json=_job_spec(), headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _template(client: AsyncClient, account: Account) -> str:
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    job_id = await _job(client, account)
    body = {"name": name, "job_id": job_id}
    response = await client.post("/api/v1/templates", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return name


async def _invitation(client: AsyncClient, account: Account) -> str:
    body = {"email": f"sweep-{uuid.uuid4().hex[:8]}@example.com", "role": "viewer"}
    response = await client.post("/api/v1/invitations", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _webhook(client: AsyncClient, account: Account) -> str:
    job_id = await _job(client, account)
    response = await client.post(
        f"/api/v1/jobs/{job_id}/webhooks", json={"name": "sweep"}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _channel(client: AsyncClient, account: Account) -> str:
    name = await _secret(client, account)
    body = {"name": "sweep", "kind": "slack", "url_secret": name}
    response = await client.post(
        "/api/v1/notification-channels", json=body, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _rule(client: AsyncClient, account: Account) -> str:
    body = {"channel_id": await _channel(client, account), "events": ["failure"]}
    response = await client.post("/api/v1/notification-rules", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _run(client: AsyncClient, account: Account) -> str:
    job_id = await _job(client, account)
    response = await client.post(f"/api/v1/jobs/{job_id}/runs", json=LATER, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# Server-Sent Events endpoints: a permitted read streams forever, so sweeps that replay
# reads skip them (tests/events checks their access rules end to end).
STREAMS = {"/api/v1/events", "/api/v1/runs/{run_id}/logs/stream"}

# Lists that change by themselves (live heartbeats), left out of before/after snapshots.
LIVE = {"/api/v1/workers"}

# Required query parameters, so a 404 cannot hide behind a 422.
QUERIES = {"/api/v1/runs/{run_id}/logs/stream": "?task=noop"}

LATER = {"delay_seconds": 3600}  # runs made here must not start while the test runs

# How to make, in a tenant, the object a path parameter names.
ID_FACTORIES: dict[str, IdFactory] = {
    "user_id": _member,
    "token_id": _api_token,
    "job_id": _job,
    "run_id": _run,
    "secret_name": _secret,
    "credential_id": _worker_credential,
    "template_name": _template,
    "invitation_id": _invitation,
    "endpoint_id": _webhook,
    "channel_id": _channel,
    "rule_id": _rule,
}

# A valid body for routes that take one, so a 404 cannot hide behind a 422.
BODIES: dict[tuple[str, str], Callable[[], Any]] = {
    ("PATCH", "/api/v1/members/{user_id}"): lambda: {"role": "viewer"},
    ("PUT", "/api/v1/jobs/{job_id}"): _job_spec,
    ("POST", "/api/v1/jobs/{job_id}/runs"): lambda: LATER,
    ("POST", "/api/v1/jobs/{job_id}/runs/batch"): lambda: {"runs": [LATER]},
    ("POST", "/api/v1/runs/{run_id}/rerun"): lambda: {},
    ("POST", "/api/v1/jobs/{job_id}/webhooks"): lambda: {"name": "sweep"},
    ("PATCH", "/api/v1/secrets/{secret_name}"): lambda: {"value": "overwritten"},
    ("POST", "/api/v1/templates/{template_name}/instantiate"): lambda: {
        "job_name": f"sweep-{uuid.uuid4().hex[:8]}"
    },
}


def _body(endpoint: Endpoint) -> Any:
    make = BODIES.get((endpoint.method, endpoint.path))
    return make() if make else None


def _id_endpoints(app: FastAPI) -> list[Endpoint]:
    found = [e for e in guarded_endpoints(app) if e.params and not e.path.startswith(ADMIN_PREFIX)]
    # Destructive calls last, so one that wrongly succeeds cannot mask the others.
    return sorted(found, key=lambda e: (e.method == "DELETE", e.path))


def _list_endpoints(app: FastAPI) -> list[Endpoint]:
    return [
        e
        for e in guarded_endpoints(app)
        if e.method == "GET"
        and not e.params
        and not e.path.startswith(ADMIN_PREFIX)
        and e.path not in STREAMS
    ]


async def _snapshot(client: AsyncClient, app: FastAPI, account: Account) -> dict[str, Any]:
    """What ``account`` sees on every list route of its tenant."""
    seen = {}
    for endpoint in _list_endpoints(app):
        if endpoint.path in LIVE:
            continue
        response = await client.get(endpoint.path, headers=account.headers)
        assert response.status_code == 200, f"{endpoint}: {response.text}"
        seen[endpoint.path] = response.json()
    return seen


def test_every_id_parameter_has_a_sweep_factory(app: FastAPI) -> None:
    missing = {p for e in _id_endpoints(app) for p in e.params if p not in ID_FACTORIES}
    assert missing == set(), f"add a factory to ID_FACTORIES in {__file__} for {missing}"


async def test_cross_tenant_ids_answer_404(
    client: AsyncClient, app: FastAPI, owner: Account, stranger: Account
) -> None:
    targets = _id_endpoints(app)
    assert targets, "no tenant route with an id found"
    theirs: dict[str, str] = {}
    for name in sorted({p for e in targets for p in e.params}):
        if name in ID_FACTORIES:
            theirs[name] = await ID_FACTORIES[name](client, stranger)
    before = await _snapshot(client, app, stranger)

    failures = []
    for endpoint in targets:
        if any(p not in theirs for p in endpoint.params):
            failures.append(f"{endpoint}: no factory for {endpoint.params}")
            continue
        url = endpoint.url(theirs) + QUERIES.get(endpoint.path, "")
        response = await client.request(
            endpoint.method, url, json=_body(endpoint), headers=owner.headers
        )
        if response.status_code == 422:
            failures.append(f"{endpoint}: 422, add a valid body to BODIES ({response.text})")
        elif response.status_code != 404 or response.json()["error"]["code"] != "not_found":
            failures.append(f"{endpoint}: {response.status_code} {response.text}")
        else:
            leaked = [v for v in (*theirs.values(), stranger.email) if v in response.text]
            if leaked:
                failures.append(f"{endpoint}: the 404 names {leaked}")
    assert failures == []
    # Nothing of theirs changed.
    assert await _snapshot(client, app, stranger) == before


async def test_own_ids_are_found_by_the_same_routes(
    client: AsyncClient, app: FastAPI, owner: Account
) -> None:
    """The sweep's 404s mean "not yours", not "never found": the same reads of the owner's
    own objects find them."""
    mine = {name: await factory(client, owner) for name, factory in ID_FACTORIES.items()}
    for endpoint in _id_endpoints(app):
        if endpoint.method != "GET" or any(p not in mine for p in endpoint.params):
            continue
        if endpoint.path in STREAMS:
            continue  # never ends; found or not is checked in tests/events
        response = await client.get(endpoint.url(mine), headers=owner.headers)
        assert response.status_code == 200, f"{endpoint}: {response.text}"


async def test_lists_do_not_leak_another_tenants_identifiers(
    client: AsyncClient, app: FastAPI, owner: Account, stranger: Account
) -> None:
    theirs = [await factory(client, stranger) for factory in ID_FACTORIES.values()]
    secrets = [
        str(stranger.tenant_id),
        stranger.tenant_id.hex,
        stranger.tenant_slug,
        stranger.email,
        str(stranger.user_id),
        *theirs,
    ]
    reads = [
        e
        for e in guarded_endpoints(app)
        if e.method == "GET" and not e.params and e.path not in STREAMS
    ]
    assert reads
    for endpoint in reads:
        response = await client.get(endpoint.path, headers=owner.headers)
        if endpoint.path.startswith(ADMIN_PREFIX):
            assert_error(response, 403, "forbidden")
            continue
        assert response.status_code == 200, f"{endpoint}: {response.text}"
        leaked = [s for s in secrets if s in response.text]
        assert leaked == [], f"{endpoint} shows another tenant's {leaked}"

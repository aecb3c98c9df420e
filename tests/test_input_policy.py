"""The input policy (backend.core.input_policy): each 500 an outside fuzzing run found, as a
named regression, plus the policy's edges. Every refusal is the one 422 shape and leaves
nothing behind (rows counted before and after)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response

from backend.core.input_policy import MAX_DEPTH, MAX_QUERY_BYTES
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import DEFAULT_PASSWORD, Account, unique_email

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}


def nested(levels: int) -> Any:
    """A value inside ``levels`` objects: ``nested(2) == {"a": {"a": 1}}``."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


async def post_raw(
    client: AsyncClient, url: str, text: str, headers: dict[str, str], method: str = "POST"
) -> Response:
    """Send ``text`` as the body exactly as written (``json=`` would re-encode it)."""
    return await client.request(
        method, url, content=text.encode("utf-8", "surrogatepass"), headers=headers
    )


def refused(response: Response, type_: str) -> dict[str, Any]:
    """A 422 in the one error shape whose first problem is the policy's ``type_``."""
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["type"] == type_, error
    return error


def job_spec(**extra: Any) -> dict[str, Any]:
    return {
        "name": f"policy-{uuid.uuid4().hex[:8]}",
        "tasks": [{"name": "noop", "type": "python", "function": "worker.builtins:noop"}],
        **extra,
    }


@pytest.fixture
async def job(client: AsyncClient, owner: Account) -> str:
    response = await client.post("/api/v1/jobs", json=job_spec(), headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def run_count(client: AsyncClient, account: Account) -> int:
    response = await client.get("/api/v1/runs?limit=200", headers=account.headers)
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


async def trigger_refused(
    client: AsyncClient, owner: Account, job: str, body_text: str, type_: str
) -> dict[str, Any]:
    before = await run_count(client, owner)
    headers = {**owner.headers, **JSON}
    error = refused(await post_raw(client, f"/api/v1/jobs/{job}/runs", body_text, headers), type_)
    batch = '{"runs": [' + body_text + "]}"
    refused(await post_raw(client, f"/api/v1/jobs/{job}/runs/batch", batch, headers), type_)
    assert await run_count(client, owner) == before
    return error


# --------------------------------------------------------- the fuzzing run's 500s, by name


async def test_trigger_params_nan_is_422(client: AsyncClient, owner: Account, job: str) -> None:
    error = await trigger_refused(client, owner, job, '{"params": {"x": NaN}}', "float_finite")
    assert error["details"][0]["loc"] == ["body", "params", "x"]


async def test_trigger_params_infinity_is_422(
    client: AsyncClient, owner: Account, job: str
) -> None:
    for number in ("Infinity", "-Infinity", "1e400"):  # 1e400 parses as infinity too
        body = '{"params": {"x": ' + number + "}}"
        await trigger_refused(client, owner, job, body, "float_finite")


async def test_trigger_params_nul_is_422(client: AsyncClient, owner: Account, job: str) -> None:
    await trigger_refused(client, owner, job, '{"params": {"x": "a\\u0000b"}}', "string_nul")
    await trigger_refused(client, owner, job, '{"params": {"k\\u0000": 1}}', "string_nul")


async def test_trigger_params_nested_deeper_than_specs_allow_is_422(
    client: AsyncClient, owner: Account, job: str
) -> None:
    body = json.dumps({"params": nested(40)})
    await trigger_refused(client, owner, job, body, "too_deep")
    # The same limit as a job spec's: a value inside MAX_DEPTH containers, counted from the
    # body's root, is the deepest allowed.
    await trigger_refused(client, owner, job, json.dumps({"params": nested(MAX_DEPTH)}), "too_deep")
    deepest = json.dumps({"params": nested(MAX_DEPTH - 1), "delay_seconds": 3600})
    response = await post_raw(
        client, f"/api/v1/jobs/{job}/runs", deepest, {**owner.headers, **JSON}
    )
    assert response.status_code == 201, response.text


async def test_job_spec_lone_surrogate_is_422(client: AsyncClient, owner: Account) -> None:
    async def jobs_listed() -> int:
        return len((await client.get("/api/v1/jobs", headers=owner.headers)).json()["items"])

    before = await jobs_listed()
    spec = json.dumps(job_spec(description="x")).replace('"x"', '"\\ud800"')
    refused(
        await post_raw(client, "/api/v1/jobs", spec, {**owner.headers, **JSON}),
        "string_surrogate",
    )
    as_key = json.dumps(job_spec(params={"x": 1})).replace('"x"', '"\\udfff"')
    refused(
        await post_raw(client, "/api/v1/jobs", as_key, {**owner.headers, **JSON}),
        "string_surrogate",
    )
    # YAML bodies meet the same policy where the spec parser decodes them.
    yaml_spec = (
        'name: surrogate\ndescription: "\\ud800"\n'
        "tasks: [{name: a, type: python, function: 'worker.builtins:noop'}]\n"
    )
    refused(
        await post_raw(client, "/api/v1/jobs", yaml_spec, {**owner.headers, **YAML}),
        "string_surrogate",
    )
    assert await jobs_listed() == before


async def test_token_name_nul_is_422(client: AsyncClient, owner: Account) -> None:
    async def tokens() -> list[Any]:
        return list((await client.get("/api/v1/tokens", headers=owner.headers)).json())

    before = await tokens()
    body = '{"name": "ci\\u0000", "role": "viewer"}'
    error = refused(
        await post_raw(client, "/api/v1/tokens", body, {**owner.headers, **JSON}), "string_nul"
    )
    assert error["details"][0]["loc"] == ["body", "name"]
    assert await tokens() == before


async def test_audit_action_filter_nul_is_422(client: AsyncClient, owner: Account) -> None:
    for query in ("action=auth%00", "actor=%00", "action=%ED%A0%80"):  # the last: a surrogate
        response = await client.get(f"/api/v1/audit?{query}", headers=owner.headers)
        error = assert_error(response, 422, "validation_failed")
        assert error["details"][0]["loc"][0] == "query"
        assert error["details"][0]["type"] in {"string_nul", "unicode_invalid"}


async def test_signup_tenant_name_nul_is_422_without_login(client: AsyncClient) -> None:
    email = unique_email("nul")
    body = json.dumps({"email": email, "password": DEFAULT_PASSWORD, "tenant_name": "Org\x00"})
    refused(await post_raw(client, "/api/v1/auth/signup", body, JSON), "string_nul")
    # No account was made: the same email cannot log in.
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert_error(login, 401, "invalid_credentials")


async def test_signup_tenant_name_lone_surrogate_is_422(client: AsyncClient) -> None:
    body = json.dumps(
        {"email": unique_email("sur"), "password": DEFAULT_PASSWORD, "tenant_name": "\ud800"}
    )
    refused(await post_raw(client, "/api/v1/auth/signup", body, JSON), "string_surrogate")


# ------------------------------------------------------------------------ policy's edges


async def test_audit_until_must_be_a_date_time(client: AsyncClient, owner: Account) -> None:
    for query in ("until=0.5", "since=1700000000", "until=2026-01-01"):
        response = await client.get(f"/api/v1/audit?{query}", headers=owner.headers)
        assert_error(response, 422, "validation_failed")
    ok = await client.get("/api/v1/audit?until=2030-01-01T00:00:00Z", headers=owner.headers)
    assert ok.status_code == 200, ok.text


async def test_run_at_must_be_date_time_text(client: AsyncClient, owner: Account, job: str) -> None:
    response = await client.post(
        f"/api/v1/jobs/{job}/runs", json={"run_at": 4102444800}, headers=owner.headers
    )
    assert_error(response, 422, "validation_failed")


async def test_long_query_string_is_422(client: AsyncClient, owner: Account) -> None:
    response = await client.get(
        "/api/v1/audit?action=" + "a" * MAX_QUERY_BYTES, headers=owner.headers
    )
    refused(response, "too_long")


async def test_huge_integer_is_422(client: AsyncClient, owner: Account, job: str) -> None:
    await trigger_refused(client, owner, job, '{"params": {"x": ' + "9" * 30 + "}}", "int_range")
    await trigger_refused(client, owner, job, '{"params": {"x": ' + "9" * 5000 + "}}", "int_range")


async def test_deeply_nested_body_that_breaks_the_parser_is_422(
    client: AsyncClient, owner: Account, job: str
) -> None:
    await trigger_refused(client, owner, job, "[" * 200_000 + "]" * 200_000, "too_deep")


async def test_nul_in_the_path_is_422(client: AsyncClient, owner: Account) -> None:
    response = await client.get("/api/v1/jobs/%00", headers=owner.headers)
    refused(response, "string_nul")


async def test_the_policy_needs_no_login_to_answer(client: AsyncClient) -> None:
    """Bad input is refused before authentication: a 422 that reveals nothing, not a 500."""
    response = await post_raw(client, "/api/v1/tokens", '{"name": NaN}', JSON)
    refused(response, "float_finite")


async def test_dashboard_form_with_nul_is_an_html_422(client: AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/signup",
        content=b"email=a%40example.com&password=x&tenant_name=Org%00",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "validation_failed" in response.text or "not acceptable" in response.text


async def test_models_refuse_bad_input_outside_http() -> None:
    """RequestModel applies the same policy to a model built by the CLI or the dashboard."""
    from pydantic import ValidationError

    from backend.runs.schemas import RunTrigger
    from backend.tokens.schemas import ApiTokenCreate

    with pytest.raises(ValidationError):
        RunTrigger(params={"x": float("nan")})
    with pytest.raises(ValidationError):
        RunTrigger(params=nested(MAX_DEPTH + 1))
    with pytest.raises(ValidationError):
        ApiTokenCreate(name="ci\x00", role="viewer")
    with pytest.raises(ValidationError):
        ApiTokenCreate(name="\ud800", role="viewer")
    with pytest.raises(ValidationError):
        RunTrigger(delay_seconds=float("inf"))
    assert RunTrigger(params={"x": "fine"}).params == {"x": "fine"}


async def test_trigger_params_are_bounded_like_a_specs(
    client: AsyncClient, owner: Account, job: str
) -> None:
    before = await run_count(client, owner)
    for params in ({"": 1}, {"k" * 201: 1}, {f"p{i}": i for i in range(101)}):
        response = await client.post(
            f"/api/v1/jobs/{job}/runs", json={"params": params}, headers=owner.headers
        )
        assert_error(response, 422, "validation_failed")
    assert await run_count(client, owner) == before

"""Secret references in job specs, and literal credentials, checked at save time."""

from __future__ import annotations

from typing import Any

import pytest

from backend.core.errors import ValidationFailed
from backend.jobs.spec import validate_job_spec
from backend.secrets.references import looks_sensitive
from kernel.secrets import referenced_names

REF = "${{ secrets.DB_PASSWORD }}"


def spec(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"name": "refs", "tasks": list(tasks)}


def problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as raised:
        validate_job_spec(document)
    return list(raised.value.details or [])


def shell(**extra: Any) -> dict[str, Any]:
    return {"name": "s", "type": "shell", "command": "echo", **extra}


def http(**extra: Any) -> dict[str, Any]:
    return {"name": "h", "type": "http", "url": "https://x.org", **extra}


def docker(**extra: Any) -> dict[str, Any]:
    return {"name": "d", "type": "docker", "image": "alpine:3", **extra}


@pytest.mark.parametrize(
    "task",
    [
        shell(command=f"psql --password={REF}"),
        shell(env={"DB_PASSWORD": REF}),
        shell(env={"PW": "${{secrets.DB_PASSWORD}}"}),
        http(url="https://${{ secrets.HOST }}/hook?k=${{ secrets.K }}"),
        http(headers={"Authorization": f"Bearer {REF}"}),
        http(method="POST", body={"nested": [{"password": REF}]}),
        docker(command=["sh", "-c", REF]),
        docker(env={"API_KEY": "${{ secrets.API_KEY }}"}),
        {"name": "p", "type": "python", "function": "m:f", "env": {"TOKEN": REF}},
    ],
)
def test_references_are_accepted_where_substituted(task: dict[str, Any]) -> None:
    stored = validate_job_spec(spec(task)).model_dump(mode="json")
    # The version keeps the reference itself, never a value.
    assert stored["tasks"][0] == {**stored["tasks"][0], **task}
    assert referenced_names(stored["tasks"][0])


@pytest.mark.parametrize(
    ("kwargs", "loc"),
    [({"a": REF}, ["kwargs", "a"]), ({"a": {"b": [REF]}}, ["kwargs", "a", "b", 0])],
)
def test_references_elsewhere_are_refused(kwargs: dict[str, Any], loc: list[Any]) -> None:
    """A python task's kwargs are not substituted: a reference there would reach the
    function as literal text, so it is refused."""
    found = problems(spec({"name": "p", "type": "python", "function": "m:f", "kwargs": kwargs}))
    assert found[0]["loc"] == ["tasks", 0, *loc]
    assert found[0]["type"] == "secret_reference_not_allowed"


def test_reference_in_an_object_key_is_refused() -> None:
    task = {"name": "h", "type": "http", "url": "https://x.org", "method": "POST",
            "body": {REF: 1}}  # fmt: skip
    found = problems(spec(task))
    assert found[0]["type"] == "secret_reference_not_allowed"


@pytest.mark.parametrize(
    "reference",
    ["${{ secrets.lower }}", "${{ secrets.1DIGIT }}", "${{ secrets.A-B }}", "${{ secrets. }}",
     "${{ secrets.X", "${{ secrets[X] }}", "${{ secrets." + "A" * 65 + " }}"],
)  # fmt: skip
def test_malformed_references_are_refused(reference: str) -> None:
    found = problems(spec({"name": "s", "type": "shell", "command": f"echo {reference}"}))
    assert [p["type"] for p in found] == ["invalid_secret_reference"]
    assert found[0]["loc"] == ["tasks", 0, "command"]


@pytest.mark.parametrize(
    ("field", "name", "value"),
    [
        ("env", "DB_PASSWORD", "hunter2"),
        ("env", "GITHUB_TOKEN", "ghp_x"),
        ("env", "AWS_SECRET_ACCESS_KEY", "x"),
        ("env", "API_KEY", "x"),
        ("env", "dbPassword", "x"),
        ("env", "SERVICE_CREDENTIALS", "x"),
        ("env", "DB_PASSWORD", f"hunter2{REF}"),
        ("headers", "Authorization", "Bearer abc"),
        ("headers", "X-Api-Key", "abc"),
        ("headers", "Cookie", "session=abc"),
    ],
)
def test_literal_credentials_are_refused(field: str, name: str, value: str) -> None:
    if field == "env":
        task = {"name": "s", "type": "shell", "command": "x", "env": {name: value}}
    else:
        task = {"name": "h", "type": "http", "url": "https://x.org", "headers": {name: value}}
    found = problems(spec(task))
    assert found[0]["loc"] == ["tasks", 0, field, name]
    assert found[0]["type"] == "literal_credential"
    assert "secrets." in found[0]["msg"]
    assert "hunter2" not in str(found) and "abc" not in str(found)


@pytest.mark.parametrize(
    "name", ["PWD", "KEY", "SORT_KEY", "CACHE_KEY", "MONKEY", "TOKENIZER_MODE", "HOME", "DEBUG"]
)
def test_ordinary_names_are_not_credentials(name: str) -> None:
    assert not looks_sensitive(name)
    validate_job_spec(spec({"name": "s", "type": "shell", "command": "x", "env": {name: "v"}}))


def test_references_are_found_only_in_substituted_fields() -> None:
    task = {"type": "shell", "command": "${{ secrets.A }} ${{ secrets.B }}",
            "env": {"X": "${{ secrets.C }}"}, "name": "${{ secrets.D }}"}  # fmt: skip
    assert referenced_names(task) == {"A", "B", "C"}

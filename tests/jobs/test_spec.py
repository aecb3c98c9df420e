"""backend.jobs.spec: decoding, field rules, graph checks, error paths, helpers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from backend.core.errors import ValidationFailed
from backend.jobs.spec import (
    MAX_DETAILS,
    JobSpec,
    dependency_graph,
    job_spec_json_schema,
    parse_job_spec,
    roots,
    stored_form,
    topological_order,
    validate_job_spec,
)
from tests.jobs.helpers import EXAMPLE_YAML

YAML = "application/yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    """A valid one-task spec with top-level ``overrides``."""
    return {"name": "job", "tasks": [shell("a")], **overrides}


def shell(name: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "shell",
        "command": "true",
        "depends_on": list(depends_on),
        **extra,
    }


def with_task(**fields: Any) -> dict[str, Any]:
    """A spec whose only task is ``shell("a")`` updated with ``fields``."""
    return minimal(tasks=[{**shell("a"), **fields}])


def problems(document: Any, content_type: str | None = None) -> list[dict[str, Any]]:
    """The details of the ValidationFailed that ``document`` must raise."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(ValidationFailed) as raised:
        parse_job_spec(body, content_type)
    error = raised.value
    assert error.status_code == 422
    assert isinstance(error.details, list) and error.details, error.message
    for item in error.details:
        assert set(item) == {"loc", "msg", "type"}, item
        assert isinstance(item["loc"], list)
    return list(error.details)


def locs(document: Any, content_type: str | None = None) -> list[list[str | int]]:
    return [p["loc"] for p in problems(document, content_type)]


def valid(document: dict[str, Any]) -> JobSpec:
    return parse_job_spec(json.dumps(document).encode(), "application/json")


# ---------------------------------------------------------------------------------- decoding


def test_example_yaml_parses() -> None:
    spec = parse_job_spec(EXAMPLE_YAML, YAML)
    assert spec.name == "nightly-etl"
    assert [t.type for t in spec.tasks] == ["shell", "http", "python", "docker"]
    assert spec.schedule is not None and spec.schedule.timezone == "Europe/Berlin"
    assert spec.tasks[0].retry.max_attempts == 3
    assert spec.queue_for(spec.tasks[0]) == "io-bound"
    assert spec.queue_for(spec.tasks[1]) == "default"
    assert spec.task("crunch").type == "python"
    with pytest.raises(KeyError):
        spec.task("missing")


def test_json_and_yaml_give_the_same_spec() -> None:
    from_yaml = parse_job_spec(EXAMPLE_YAML, YAML)
    as_json = json.dumps(stored_form(from_yaml)).encode()
    assert parse_job_spec(as_json, None) == from_yaml
    assert parse_job_spec(as_json, "application/json; charset=utf-8") == from_yaml


def test_stored_form_is_plain_json_with_defaults_and_round_trips() -> None:
    spec = valid(minimal())
    stored = stored_form(spec)
    assert json.loads(json.dumps(stored)) == stored
    assert stored["queue"] == "default"
    assert stored["concurrency_policy"] == "allow"
    assert stored["tasks"][0]["retry"] == {
        "max_attempts": 1,
        "initial_delay": 1.0,
        "factor": 2.0,
        "max_delay": 300.0,
        "jitter": True,
    }
    assert JobSpec.model_validate(stored) == spec


@pytest.mark.parametrize(
    "content_type",
    ["application/yaml", "application/x-yaml", "text/yaml", "Application/YAML; charset=utf-8"],
)
def test_yaml_content_types(content_type: str) -> None:
    assert parse_job_spec(b"name: j\ntasks: [{name: a, type: shell, command: x}]", content_type)


def test_yaml_dates_stay_strings() -> None:
    spec = parse_job_spec(
        b"name: j\nparams: {date: 2026-01-01, at: 2026-01-01T10:00:00Z}\n"
        b"tasks: [{name: a, type: shell, command: x}]",
        YAML,
    )
    assert spec.params == {"date": "2026-01-01", "at": "2026-01-01T10:00:00Z"}


def test_yaml_body_sent_as_json_is_invalid_json() -> None:
    [problem] = problems(b"name: j\ntasks: []", "application/json")
    assert problem["type"] == "json_invalid"


def test_utf8_bom_is_accepted() -> None:
    assert parse_job_spec(b"\xef\xbb\xbf" + json.dumps(minimal()).encode(), None).name == "job"


BILLION_LAUGHS = b"""
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused() -> None:
    [problem] = problems(BILLION_LAUGHS, YAML)
    assert problem["type"] == "yaml_invalid"
    assert "anchors and aliases" in problem["msg"]


def test_even_a_harmless_alias_is_refused() -> None:
    body = b"name: j\ntasks:\n  - &t {name: a, type: shell, command: x}\n  - *t\n"
    assert "anchors and aliases" in problems(body, YAML)[0]["msg"]


def test_merge_key_with_alias_is_refused() -> None:
    body = b"base: &b {type: shell}\nname: j\ntasks: [{<<: *b, name: a, command: x}]\n"
    assert problems(body, YAML)[0]["type"] == "yaml_invalid"


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "fragment"),
    [
        (b"{not json", None, "json_invalid", "line 1"),
        (b"", None, "json_invalid", "Invalid JSON"),
        (b'{"a": 1, "a": 2}', None, "json_invalid", "duplicate key"),
        (b'{"a": NaN}', None, "json_invalid", "NaN"),
        (b'{"a": Infinity}', None, "json_invalid", "Infinity"),
        (b"[" * 200_000, None, "json_invalid", "deep"),
        (b"\xff\xfe{}", None, "unicode_invalid", "UTF-8"),
        (b"\xff\xfe{}", YAML, "unicode_invalid", "UTF-8"),
        (b"[1, 2]", None, "object_type", "not a list"),
        (b'"text"', None, "object_type", "not a str"),
        (b"42", None, "object_type", "not a int"),
        (b"null", None, "object_type", "not empty"),
        (b"", YAML, "object_type", "not empty"),
        (b"- a\n- b\n", YAML, "object_type", "YAML mapping"),
        (b"a: [1, 2\n", YAML, "yaml_invalid", "line"),
        (b"a: 1\na: 2\n", YAML, "yaml_invalid", "duplicate key"),
        (b"name: j\n---\nname: k\n", YAML, "yaml_invalid", "single document"),
        (b"x: !!python/object/apply:os.system [id]", YAML, "yaml_invalid", "constructor"),
        (b"[" * 200_000, YAML, "yaml_invalid", "deep"),
        (b"\tname: x", YAML, "yaml_invalid", "Invalid YAML"),
    ],
)
def test_undecodable_bodies(
    body: bytes, content_type: str | None, kind: str, fragment: str
) -> None:
    [problem] = problems(body, content_type)
    assert problem["type"] == kind
    assert problem["loc"] == []
    assert fragment in problem["msg"]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b"x: !!binary aGVsbG8=", ["x"], "json_type"),
        (b"x: !!set {a, b}", ["x"], "json_type"),
        (b"x: .nan", ["x"], "float_finite"),
        (b"x: -.inf", ["x"], "float_finite"),
        (b"1: one", ["1"], "key_type"),
        (b"params: {big: 123456789012345678901234567890}", ["params", "big"], "int_range"),
        (b'params: {s: "a\\0b"}', ["params", "s"], "string_nul"),
    ],
)
def test_yaml_values_that_are_not_json(body: bytes, loc: list[Any], kind: str) -> None:
    found = problems(body, YAML)
    assert {"loc": loc, "type": kind} in [{"loc": p["loc"], "type": p["type"]} for p in found]


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    nested: Any = "leaf"
    for _ in range(40):
        nested = {"k": nested}
    found = problems(minimal(params={"deep": nested}))
    assert found[0]["type"] == "too_deep"
    assert found[0]["loc"][:2] == ["params", "deep"]


def test_validate_job_spec_on_a_dict() -> None:
    assert validate_job_spec(minimal()).name == "job"
    with pytest.raises(ValidationFailed):
        validate_job_spec({"name": "job"})


# ---------------------------------------------------------------------------- field rules


@pytest.mark.parametrize("name", ["a", "A", "0", "nightly-etl", "a.b_c-d", "x" * 100])
def test_valid_job_names(name: str) -> None:
    assert valid(minimal(name=name)).name == name


@pytest.mark.parametrize(
    "name", ["", "-a", ".a", "_a", "a b", "a/b", "é", "x" * 101, "a\n", "a\x00"]
)
def test_invalid_job_names(name: str) -> None:
    assert ["name"] in locs(minimal(name=name))


@pytest.mark.parametrize("name", ["_private", "0", "a.b-c_d", "x" * 100])
def test_valid_task_names(name: str) -> None:
    assert valid(minimal(tasks=[shell(name)])).tasks[0].name == name


@pytest.mark.parametrize("name", ["", "-a", "a b", "a:b", "x" * 101])
def test_invalid_task_names(name: str) -> None:
    assert ["tasks", 0, "name"] in locs(minimal(tasks=[shell(name)]))


@pytest.mark.parametrize("queue", ["default", "q1", "0", "gpu_big-2", "x" * 63])
def test_valid_queues(queue: str) -> None:
    assert valid(minimal(queue=queue)).queue == queue
    assert valid(with_task(queue=queue)).tasks[0].queue == queue


@pytest.mark.parametrize("queue", ["", "Default", "-q", "_q", "q.x", "q x", "x" * 64])
def test_invalid_queues(queue: str) -> None:
    assert ["queue"] in locs(minimal(queue=queue))
    assert ["tasks", 0, "queue"] in locs(with_task(queue=queue))


def test_strict_types_are_not_coerced() -> None:
    found = locs(
        minimal(
            timeout_seconds="3600",
            tasks=[{**shell("a"), "timeout_seconds": True, "retry": {"jitter": "yes"}}],
        )
    )
    assert ["timeout_seconds"] in found
    assert ["tasks", 0, "timeout_seconds"] in found
    assert ["tasks", 0, "retry", "jitter"] in found


def test_unknown_keys_are_refused_everywhere() -> None:
    document = minimal(
        extra=1,
        schedule={"cron": "* * * * *", "enabled": True},
        tasks=[{**shell("a"), "retry": {"max_attempts": 2, "backoff": 3}, "oops": 1}],
    )
    found = problems(document)
    assert {(tuple(p["loc"]), p["type"]) for p in found} >= {
        (("extra",), "extra_forbidden"),
        (("schedule", "enabled"), "extra_forbidden"),
        (("tasks", 0, "oops"), "extra_forbidden"),
        (("tasks", 0, "retry", "backoff"), "extra_forbidden"),
    }


def test_fields_of_another_task_type_are_refused() -> None:
    document = minimal(
        tasks=[{"name": "a", "type": "http", "url": "https://x.test", "command": "ls"}]
    )
    assert locs(document) == [["tasks", 0, "command"]]


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        ({"name": "a", "type": "ftp"}, "union_tag_invalid"),
        ({"name": "a"}, "union_tag_not_found"),
        ("not a task", "model_attributes_type"),
    ],
)
def test_task_type_discriminator(task: Any, kind: str) -> None:
    [problem] = problems(minimal(tasks=[task]))
    assert problem["loc"] == ["tasks", 0]
    assert problem["type"] == kind


@pytest.mark.parametrize(
    ("document", "loc"),
    [
        (minimal(timeout_seconds=0), ["timeout_seconds"]),
        (minimal(timeout_seconds=-1), ["timeout_seconds"]),
        (minimal(timeout_seconds=7 * 24 * 3600 + 1), ["timeout_seconds"]),
        (minimal(timeout_seconds=1.5), ["timeout_seconds"]),
        (with_task(timeout_seconds=0), ["tasks", 0, "timeout_seconds"]),
        (minimal(tasks=[]), ["tasks"]),
        (minimal(tasks=[shell(f"t{i}") for i in range(1001)]), ["tasks"]),
        (minimal(concurrency_policy="queue"), ["concurrency_policy"]),
        (minimal(description="x" * 10_001), ["description"]),
        (minimal(params=[1]), ["params"]),
        (minimal(params={f"k{i}": i for i in range(101)}), ["params"]),
        (minimal(params={"": 1}), ["params", "", "[key]"]),
        (with_task(command=""), ["tasks", 0, "command"]),
        (with_task(command="x" * 65_537), ["tasks", 0, "command"]),
        (with_task(env={"1BAD": "x"}), ["tasks", 0, "env", "1BAD", "[key]"]),
        (with_task(env={"A-B": "x"}), ["tasks", 0, "env", "A-B", "[key]"]),
        (with_task(env={"A": 1}), ["tasks", 0, "env", "A"]),
        (with_task(env={f"K{i}": "v" for i in range(201)}), ["tasks", 0, "env"]),
        (with_task(depends_on="a"), ["tasks", 0, "depends_on"]),
    ],
)
def test_bounds(document: dict[str, Any], loc: list[Any]) -> None:
    assert loc in locs(document)


def test_declared_dates_in_json_params_are_kept() -> None:
    assert valid(minimal(params={"date": "2026-01-01", "n": [1, 2.5, None]})).params["n"] == [
        1,
        2.5,
        None,
    ]


# ------------------------------------------------------------------------------------ retry


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_delay": -0.5}, "max_delay"),
        ({"factor": 0.5}, "factor"),
        ({"initial_delay": 86_401}, "initial_delay"),
    ],
)
def test_retry_bounds(retry: dict[str, Any], field: str) -> None:
    assert ["tasks", 0, "retry", field] in locs(with_task(retry=retry))


def test_retry_max_delay_below_initial_delay() -> None:
    [problem] = problems(with_task(retry={"initial_delay": 10, "max_delay": 5}))
    assert problem["loc"] == ["tasks", 0, "retry"]
    assert problem["msg"] == "max_delay must be at least initial_delay"


def test_retry_default_max_delay_follows_a_large_initial_delay() -> None:
    retry = valid(with_task(retry={"initial_delay": 600})).tasks[0].retry
    assert retry.max_delay == 600


def test_retry_limits_are_inclusive() -> None:
    retry = (
        valid(
            with_task(retry={"max_attempts": 100, "initial_delay": 0, "factor": 1, "max_delay": 0})
        )
        .tasks[0]
        .retry
    )
    assert (retry.max_attempts, retry.initial_delay, retry.factor, retry.max_delay) == (
        100,
        0,
        1,
        0,
    )


# ------------------------------------------------------------------------------------- http


def http(**fields: Any) -> dict[str, Any]:
    return minimal(tasks=[{"name": "h", "type": "http", "url": "https://example.org/x", **fields}])


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_http_methods(method: str) -> None:
    assert valid(http(method=method)).tasks[0].method == method  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["get", "TRACE", "CONNECT", ""])
def test_invalid_http_methods(method: str) -> None:
    assert ["tasks", 0, "method"] in locs(http(method=method))


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080/a?b=c", "https://example.org", "https://[::1]:443/x", "HTTP://X.ORG"],
)
def test_valid_urls(url: str) -> None:
    assert valid(http(url=url)).tasks[0].url == url  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.org/x",
        "https://",
        "https://exa mple.org",
        "https://example.org/\nx",
        "http://example.org:99999/",
        "",
        "https://x.org/" + "a" * 2048,
    ],
)
def test_invalid_urls(url: str) -> None:
    assert ["tasks", 0, "url"] in locs(http(url=url))


def test_http_defaults_and_body() -> None:
    task = valid(http(body={"a": [1, {"b": None}]})).tasks[0]
    assert task.method == "GET"  # type: ignore[union-attr]
    assert task.expect_status is None  # type: ignore[union-attr]
    assert task.body == {"a": [1, {"b": None}]}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("expect", "loc"),
    [
        ([99], ["tasks", 0, "expect_status", 0]),
        ([200, 600], ["tasks", 0, "expect_status", 1]),
        ([], ["tasks", 0, "expect_status"]),
        (list(range(200, 301)), ["tasks", 0, "expect_status"]),
        (["200"], ["tasks", 0, "expect_status", 0]),
    ],
)
def test_expect_status_bounds(expect: list[Any], loc: list[Any]) -> None:
    assert loc in locs(http(expect_status=expect))


def test_headers() -> None:
    assert valid(http(headers={"X-Token": "${{ secrets.X_TOKEN }}", "Accept": "*/*"}))
    assert ["tasks", 0, "headers", "Bad Header", "[key]"] in locs(http(headers={"Bad Header": "x"}))
    assert ["tasks", 0, "headers", "X-A"] in locs(http(headers={"X-A": "x\r\nInjected: 1"}))
    assert ["tasks", 0, "headers"] in locs(http(headers={f"H{i}": "v" for i in range(101)}))


# ------------------------------------------------------------------------- python, docker


@pytest.mark.parametrize("function", ["mypkg.tasks:crunch", "m:f", "_a.b_2:_c3", "a.b.c.d:e"])
def test_valid_python_functions(function: str) -> None:
    document = minimal(tasks=[{"name": "p", "type": "python", "function": function}])
    assert valid(document).tasks[0].function == function  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "function",
    [
        "",
        "mypkg",
        "mypkg.tasks.crunch",
        "1pkg:f",
        "pkg:1f",
        "pkg:f.g",
        "a:b:c",
        "pkg:f()",
        "pkg; rm -rf /:f",
    ],
)
def test_invalid_python_functions(function: str) -> None:
    document = minimal(tasks=[{"name": "p", "type": "python", "function": function}])
    assert ["tasks", 0, "function"] in locs(document)


def test_python_kwargs_keys_are_identifiers() -> None:
    ok = minimal(tasks=[{"name": "p", "type": "python", "function": "m:f", "kwargs": {"x": 1}}])
    assert valid(ok).tasks[0].kwargs == {"x": 1}  # type: ignore[union-attr]
    bad = minimal(tasks=[{"name": "p", "type": "python", "function": "m:f", "kwargs": {"a-b": 1}}])
    assert ["tasks", 0, "kwargs", "a-b", "[key]"] in locs(bad)


def test_docker_task() -> None:
    image = "ghcr.io/org/img:1.2@sha256:ab"
    document = minimal(tasks=[{"name": "d", "type": "docker", "image": image}])
    task = valid(document).tasks[0]
    assert task.command is None  # type: ignore[union-attr]
    for image in ["", "-x", "a b", "x" * 256]:
        bad = minimal(tasks=[{"name": "d", "type": "docker", "image": image}])
        assert ["tasks", 0, "image"] in locs(bad), image
    bad = minimal(tasks=[{"name": "d", "type": "docker", "image": "alpine", "command": "echo"}])
    assert ["tasks", 0, "command"] in locs(bad)


# ---------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    "cron",
    [
        "30 2 * * *",
        "*/5 * * * *",
        "0 0 1 1 *",
        "0 9 * * mon-fri",
        "* * * * * */10",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
    ],
)
def test_valid_crons(cron: str) -> None:
    schedule = valid(minimal(schedule={"cron": cron})).schedule
    assert schedule is not None
    assert (schedule.cron, schedule.timezone) == (cron, "UTC")


@pytest.mark.parametrize(
    "cron",
    [
        "",
        "* * * *",
        "0 0 * * * * *",
        "61 * * * *",
        "* 25 * * *",
        "a b c d e",
        "@reboot",
        "@every 5m",
        "@HOURLY",
        "x" * 201,
    ],
)
def test_invalid_crons(cron: str) -> None:
    assert ["schedule", "cron"] in locs(minimal(schedule={"cron": cron}))


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_valid_timezones(timezone: str) -> None:
    schedule = valid(minimal(schedule={"cron": "@daily", "timezone": timezone})).schedule
    assert schedule is not None and schedule.timezone == timezone


@pytest.mark.parametrize(
    "timezone",
    [
        "",
        "Mars/Olympus",
        "europe/berlin",
        "../etc/passwd",
        "/etc/passwd",
        "Europe/../Europe/Berlin",
        "x" * 65,
        "Europe/Berlin ",
    ],
)
def test_invalid_timezones(timezone: str) -> None:
    found = problems(minimal(schedule={"cron": "@daily", "timezone": timezone}))
    assert [p["loc"] for p in found] == [["schedule", "timezone"]]


def test_schedule_requires_cron() -> None:
    assert ["schedule", "cron"] in locs(minimal(schedule={"timezone": "UTC"}))


# -------------------------------------------------------------------------------- the graph


def test_duplicate_task_names() -> None:
    [problem] = problems(minimal(tasks=[shell("a"), shell("b"), shell("a")]))
    assert problem["loc"] == ["tasks", 2, "name"]
    assert problem["type"] == "duplicate_task"
    assert "'a'" in problem["msg"]


def test_dependency_on_a_missing_task() -> None:
    [problem] = problems(minimal(tasks=[shell("a"), shell("b", "a", "ghost")]))
    assert problem["loc"] == ["tasks", 1, "depends_on", 1]
    assert problem["type"] == "unknown_dependency"
    assert "ghost" in problem["msg"]


def test_self_dependency() -> None:
    [problem] = problems(minimal(tasks=[shell("a", "a")]))
    assert problem["loc"] == ["tasks", 0, "depends_on", 0]
    assert problem["type"] == "self_dependency"


def test_repeated_dependency() -> None:
    [problem] = problems(minimal(tasks=[shell("a"), shell("b", "a", "a")]))
    assert problem["loc"] == ["tasks", 1, "depends_on", 1]
    assert problem["type"] == "duplicate_dependency"


def test_two_task_cycle_is_named() -> None:
    [problem] = problems(minimal(tasks=[shell("a", "b"), shell("b", "a")]))
    assert problem["type"] == "dependency_cycle"
    assert problem["msg"].startswith("cycle: a -> b -> a")
    assert problem["loc"] == ["tasks", 0, "depends_on", 0]


def test_longer_cycle_behind_a_valid_prefix() -> None:
    tasks = [shell("start"), shell("x", "start", "z"), shell("y", "x"), shell("z", "y")]
    [problem] = problems(minimal(tasks=tasks))
    assert problem["msg"].startswith("cycle: x -> z -> y -> x")
    assert problem["loc"] == ["tasks", 1, "depends_on", 1]


def test_every_cycle_is_reported() -> None:
    tasks = [shell("a", "b"), shell("b", "a"), shell("c", "d"), shell("d", "c"), shell("e")]
    found = problems(minimal(tasks=tasks))
    assert [p["type"] for p in found] == ["dependency_cycle", "dependency_cycle"]
    assert "a -> b -> a" in found[0]["msg"]
    assert "c -> d -> c" in found[1]["msg"]


def test_many_problems_are_reported_together() -> None:
    document = minimal(
        name="bad name",
        tasks=[
            {**shell("a", "missing"), "timeout_seconds": 0},
            shell("a"),
            shell("b", "c"),
            shell("c", "b"),
            {**shell("d", "d"), "retry": {"max_attempts": 0}},
        ],
    )
    with pytest.raises(ValidationFailed) as raised:
        parse_job_spec(json.dumps(document).encode(), None)
    details = raised.value.details
    assert isinstance(details, list)
    found = {(tuple(p["loc"]), p["type"]) for p in details}
    assert found == {
        (("name",), "string_pattern_mismatch"),
        (("tasks", 0, "timeout_seconds"), "greater_than"),
        (("tasks", 4, "retry", "max_attempts"), "greater_than_equal"),
        (("tasks", 1, "name"), "duplicate_task"),
        (("tasks", 0, "depends_on", 0), "unknown_dependency"),
        (("tasks", 4, "depends_on", 0), "self_dependency"),
        (("tasks", 2, "depends_on", 0), "dependency_cycle"),
    }
    assert raised.value.message.startswith("The job spec is not valid: name: ")
    assert "(and 6 more problems)" in raised.value.message


def test_details_are_capped_but_counted() -> None:
    tasks = [shell(f"t{i}", "ghost") for i in range(MAX_DETAILS + 50)]
    with pytest.raises(ValidationFailed) as raised:
        parse_job_spec(json.dumps(minimal(tasks=tasks)).encode(), None)
    assert len(raised.value.details or []) == MAX_DETAILS
    assert f"and {MAX_DETAILS + 49} more problems" in raised.value.message


def test_errors_do_not_echo_the_input() -> None:
    secret = "s3cr3t-value-" + "x" * 20
    found = problems(with_task(env={"TOKEN": 42, "K": secret}, timeout_seconds=secret))
    assert secret not in json.dumps(found)


# --------------------------------------------------------------------------------- helpers


def test_topological_order_and_roots() -> None:
    spec = parse_job_spec(EXAMPLE_YAML, YAML)
    assert topological_order(spec) == ["extract", "notify", "crunch", "box"]
    assert roots(spec) == ["extract", "box"]


def test_topological_order_respects_dependencies_and_declaration_order() -> None:
    tasks = [
        shell("load", "transform"),
        shell("transform", "extract", "fetch"),
        shell("extract"),
        shell("fetch"),
        shell("report", "load"),
        shell("other"),
    ]
    spec = valid(minimal(tasks=tasks))
    order = topological_order(spec)
    assert order == ["extract", "fetch", "transform", "load", "report", "other"]
    for task in spec.tasks:
        for dependency in task.depends_on:
            assert order.index(dependency) < order.index(task.name)
    assert roots(spec) == ["extract", "fetch", "other"]
    assert set(dependency_graph(spec).successors("transform")) == {"load"}


def test_a_thousand_task_chain() -> None:
    tasks = [shell("t0")] + [shell(f"t{i}", f"t{i - 1}") for i in range(1, 1000)]
    spec = valid(minimal(tasks=list(reversed(tasks))))
    assert topological_order(spec) == [f"t{i}" for i in range(1000)]
    assert roots(spec) == ["t0"]


def test_json_schema_is_self_contained() -> None:
    schema = job_spec_json_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "tasks"}
    schema["title"] = "changed"
    assert job_spec_json_schema()["title"] != "changed"


def test_validation_does_not_mutate_the_document() -> None:
    document = minimal(tasks=[shell("a"), shell("b", "a")])
    before = copy.deepcopy(document)
    validate_job_spec(document)
    assert document == before


# ------------------------------------------------------------------------------ DAG semantics


def test_dag_fields_parse_with_their_defaults() -> None:
    spec = valid(
        minimal(
            failure_policy="continue",
            tasks=[
                shell("check"),
                shell(
                    "load",
                    "check",
                    when="tasks.check.output.rows > 0 and params.env == 'prod'",
                    trigger_rule="none_failed",
                    on_failure="continue",
                ),
                shell("per_file", "check", for_each="tasks.check.output.files"),
            ],
        )
    )
    assert spec.failure_policy == "continue"
    assert spec.task("load").trigger_rule == "none_failed"
    assert spec.task("check").trigger_rule == "all_success"
    assert spec.task("check").on_failure == "fail_run"
    assert valid(minimal()).failure_policy == "fail_fast"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trigger_rule", "sometimes"),
        ("on_failure", "ignore"),
        ("when", ""),
        ("for_each", 5),
    ],
)
def test_bad_dag_field_values(field: str, value: Any) -> None:
    assert ["tasks", 1, field] in [
        loc[:3] for loc in locs(minimal(tasks=[shell("a"), shell("b", "a", **{field: value})]))
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "().__class__.__bases__[0].__subclasses__()",
        "params.__class__",
        "__import__('os').system('id')",
        "open('/etc/passwd')",
        "2 ** 99999999",
        "'a' * 10**9",
        "(" * 100 + "1" + ")" * 100,
        "params.x +",
        "lambda: 1",
        "os.environ",
    ],
)
def test_malicious_or_broken_expressions_are_422_at_their_path(expression: str) -> None:
    found = problems(minimal(tasks=[shell("a"), shell("b", "a", when=expression)]))
    assert found[0]["loc"] == ["tasks", 1, "when"]
    assert found[0]["type"] == "invalid_expression"


def test_expressions_may_only_read_upstream_tasks() -> None:
    found = problems(
        minimal(tasks=[shell("a"), shell("b"), shell("c", "a", when="tasks.b.status == 'ok'")])
    )
    assert found == [{"loc": ["tasks", 2, "when"], "type": "not_upstream", "msg": found[0]["msg"]}]
    assert "'b'" in found[0]["msg"]
    # Upstream through another task is fine.
    valid(minimal(tasks=[shell("a"), shell("b", "a"), shell("c", "b", when="tasks.a.output")]))


def test_for_each_of_a_constant_must_be_a_list() -> None:
    found = problems(with_task(for_each="'not a list'"))
    assert found[0]["type"] == "for_each_not_a_list" and found[0]["loc"] == ["tasks", 0, "for_each"]
    valid(with_task(for_each="[1, 2, 3]"))
    valid(with_task(for_each="params.items"))


def test_several_dag_problems_are_reported_together() -> None:
    found = locs(
        minimal(
            tasks=[
                shell("a", when="params.__x"),
                shell("b", "a", for_each="tasks.zzz.output"),
                shell("c", "c"),
            ]
        )
    )
    assert ["tasks", 0, "when"] in found
    assert ["tasks", 1, "for_each"] in found
    assert ["tasks", 2, "depends_on", 0] in found

"""backend.jobs.spec_text: specs as compact YAML, and problems located at their lines."""

from __future__ import annotations

from typing import Any

import pytest

from backend.core.errors import ValidationFailed
from backend.jobs.spec import parse_job_spec, stored_form
from backend.jobs.spec_text import (
    LocatedProblem,
    format_path,
    locate_problems,
    node_line,
    plain_yaml,
    spec_yaml,
    syntax_error_line,
)
from tests.jobs.helpers import EXAMPLE_YAML

YAML = "application/yaml"


def problems_of(text: str) -> list[LocatedProblem]:
    with pytest.raises(ValidationFailed) as caught:
        parse_job_spec(text.encode(), YAML)
    return locate_problems(text, caught.value.details, caught.value.message)


def test_spec_yaml_leaves_defaults_out_and_reads_back_the_same_spec() -> None:
    stored = stored_form(parse_job_spec(EXAMPLE_YAML, YAML))
    text = spec_yaml(stored)
    assert "trigger_rule" not in text  # a default
    assert text.startswith("name: nightly-etl\n")
    assert "  - name: extract\n    type: shell\n" in text  # name and type first
    assert "'2026-01-01'" in text  # a string that looks like a date stays quoted
    assert stored_form(parse_job_spec(text.encode(), YAML)) == stored


def test_plain_yaml_never_writes_anchors() -> None:
    shared: dict[str, Any] = {"a": [1, 2]}
    text = plain_yaml({"x": shared, "y": shared})
    assert "&" not in text and "*" not in text


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        ([], ""),
        (["name"], "name"),
        (["tasks", 2, "depends_on", 0], "tasks[2].depends_on[0]"),
        (["params", "a.b"], "params.a.b"),
    ],
)
def test_format_path(loc: list[str | int], expected: str) -> None:
    assert format_path(loc) == expected


def test_field_problems_point_at_their_key() -> None:
    text = (
        "name: demo\n"
        "schedule:\n"
        "  cron: nonsense\n"  # line 3
        "tasks:\n"
        "  - name: a\n"
        "    type: shell\n"
        "    command: echo\n"
        "    retry: {max_attempts: 0}\n"  # line 8 (flow mapping: same line)
    )
    found = {p.path: p.line for p in problems_of(text)}
    assert found == {"schedule.cron": 3, "tasks[0].retry.max_attempts": 8}


def test_a_missing_field_points_at_the_nearest_part_that_exists() -> None:
    text = "name: demo\ntasks:\n  - name: a\n    type: shell\n"
    [problem] = problems_of(text)
    assert (problem.line, problem.path) == (3, "tasks[0].command")
    assert str(problem) == "line 3: tasks[0].command: Field required"


def test_graph_problems_point_at_the_dependency() -> None:
    text = (
        "name: demo\n"
        "tasks:\n"
        "  - {name: a, type: shell, command: x}\n"
        "  - {name: a, type: shell, command: x}\n"  # line 4: duplicate name
        "  - name: b\n"
        "    type: shell\n"
        "    command: x\n"
        "    depends_on: [b]\n"  # line 8: itself
    )
    found = {p.path: p.line for p in problems_of(text)}
    assert found == {"tasks[1].name": 4, "tasks[2].depends_on[0]": 8}


def test_syntax_errors_and_duplicate_keys_give_the_line_of_their_mark() -> None:
    [unclosed] = problems_of("name: x\ntasks: [\n")
    assert unclosed.line == 3
    [duplicate] = problems_of("name: x\ntasks: []\nname: y\n")
    assert duplicate.line == 3 and "duplicate key" in duplicate.message
    [alias] = problems_of("name: &n x\ntasks: []\n")
    assert alias.line == 1
    assert syntax_error_line("name: fine\n") is None


def test_problems_of_the_whole_document_have_no_line() -> None:
    [problem] = problems_of("- a list\n")
    assert problem.line is None and problem.path == ""
    assert "YAML mapping" in str(problem)


def test_details_without_locations_give_the_message() -> None:
    [problem] = locate_problems("name: x\n", {"active_run_id": "r"}, "Refused")
    assert problem == LocatedProblem(None, "", "Refused")


def test_node_line_without_a_document() -> None:
    assert node_line(None, ["name"]) is None


def test_tricky_strings_read_back_the_same() -> None:
    document = {
        "name": "tricky",
        "params": {"yes": "no", "n": "1", "empty": "", "multi": "a\nb", "null": None},
        "tasks": [
            {
                "name": "box",
                "type": "docker",
                "image": "alpine:3",
                "command": ["a, b", "x: y", "[z]", "#c", "'q'", '"d"', "", "on", "1.5"],
            }
        ],
    }
    stored = stored_form(parse_job_spec(plain_yaml(document).encode(), YAML))
    assert stored_form(parse_job_spec(spec_yaml(stored).encode(), YAML)) == stored
    assert stored["tasks"][0]["command"] == document["tasks"][0]["command"]
    assert stored["params"] == document["params"]


def test_an_unknown_task_type_points_at_its_type_line_and_problems_come_in_line_order() -> None:
    text = (
        "name: demo\n"
        "tasks:\n"
        "  - name: a\n"
        "    type: shell\n"
        "    command: x\n"
        "    depends_on: [nowhere]\n"  # line 6
        "  - name: b\n"
        "    type: nope\n"  # line 8
    )
    assert [(p.line, p.path) for p in problems_of(text)] == [
        (6, "tasks[0].depends_on[0]"),
        (8, "tasks[1]"),
    ]

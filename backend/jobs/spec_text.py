"""Job specs as YAML text for people: the compact form an editor starts from, and the line
of a submitted document each validation problem points at.

``spec_yaml`` writes a stored spec without the values that are defaults, in the order of
the spec's fields (a task's ``name``, ``type`` and what its type needs first); reading it back with
``parse_job_spec`` gives the same stored spec. ``locate_problems`` turns the ``details``
of a ``ValidationFailed`` (each with a ``loc`` path such as ``["tasks", 2, "depends_on",
0]``) into lines of the YAML text the user typed, using the node tree ``yaml.compose``
builds: a path that exists gives its key's line; one that does not (a missing field)
gives the line of the deepest part that does. A YAML syntax error gives the line of its
mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from backend.jobs.spec import JobSpec, TaskBase, _SpecLoader

TASK_KEYS_FIRST = ("name", "type")
COMMON_TASK_KEYS = frozenset(TaskBase.model_fields)
FLOW_LIST_WIDTH = 60
# A task whose ``type`` is missing or unknown: pydantic reports it at the task; the line
# that needs fixing is its ``type:`` (or, when there is none, the task's first line).
TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


class _SpecDumper(yaml.SafeDumper):
    """Plain YAML: never an anchor or alias (the spec loader refuses them), and lists
    indented under their key (``tasks:\n  - name: a``) as people write them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    """A short list of scalars on one line (``depends_on: [extract]``), others as blocks."""
    scalars = all(isinstance(item, str | int | float | bool) or item is None for item in items)
    flow = scalars and len(repr(items)) <= FLOW_LIST_WIDTH
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_SpecDumper.add_representer(list, _represent_list)


def spec_yaml(spec: dict[str, Any]) -> str:
    """A stored spec as YAML, defaults left out; it parses back to the same spec."""
    compact = JobSpec.model_validate(spec).model_dump(mode="json", exclude_defaults=True)
    compact["tasks"] = [_task_in_order(task) for task in compact.get("tasks", [])]
    return plain_yaml(compact)


def _task_in_order(task: dict[str, Any]) -> dict[str, Any]:
    """Name and type first, then what the type needs (command, url...), then the rest."""
    first = [key for key in TASK_KEYS_FIRST if key in task]
    own = [key for key in task if key not in COMMON_TASK_KEYS and key not in first]
    rest = [key for key in task if key not in first and key not in own]
    return {key: task[key] for key in [*first, *own, *rest]}


def plain_yaml(value: Any) -> str:
    """A JSON value as block-style YAML, keys in their order, no anchors."""
    return yaml.dump(
        value,
        Dumper=_SpecDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


@dataclass(frozen=True)
class LocatedProblem:
    """One validation problem: the 1-based line it points at (None: the whole document),
    the path in the spec (``tasks[2].depends_on[0]``) and what is wrong."""

    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"


def format_path(loc: Sequence[str | int]) -> str:
    """``["tasks", 2, "depends_on"]`` as ``tasks[2].depends_on``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _compose(text: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=_SpecLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def syntax_error_line(text: str) -> int | None:
    """The line of the YAML error in ``text`` (what the spec loader stops at), if any."""
    try:
        yaml.load(text, Loader=_SpecLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        return mark.line + 1 if mark is not None else None
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return None


def node_line(root: Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of ``loc`` in a composed document (see the module docstring)."""
    if root is None:
        return None
    node, line = root, root.start_mark.line
    for part in loc:
        child: Node | None = None
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    line, child = key.start_mark.line, value
                    break
        elif isinstance(node, SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
            line = child.start_mark.line if child is not None else line
        if child is None:
            break
        node = child
    return line + 1


def locate_problems(text: str, details: Any, fallback: str) -> list[LocatedProblem]:
    """The problems of an error's ``details`` with their lines in ``text``, in line order.

    ``details`` that are not a list of ``{"loc", "msg"}`` entries give one problem,
    ``fallback`` (the error's message), located only if ``text`` has a YAML syntax error.
    """
    entries = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    if not entries:
        return [LocatedProblem(syntax_error_line(text), "", fallback)]
    root = _compose(text)
    problems = []
    for entry in entries:
        loc = [p for p in entry.get("loc") or [] if isinstance(p, str | int)]
        where = [*loc, "type"] if entry.get("type") in TAG_ERRORS else loc
        message = str(entry.get("msg") or fallback)
        if entry.get("type") == "yaml_invalid":
            problems.append(LocatedProblem(syntax_error_line(text), "", message))
        elif not loc:
            problems.append(LocatedProblem(None, "", message))
        else:
            problems.append(LocatedProblem(node_line(root, where), format_path(loc), message))
    return sorted(problems, key=lambda p: -1 if p.line is None else p.line)

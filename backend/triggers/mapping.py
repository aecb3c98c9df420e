"""The payload-to-params mapping of a webhook endpoint: a small JSON-path subset.

A mapping is ``{param: path}``; a path is ``$`` followed by steps: ``.name``, ``[3]``
(an array index, negative from the end) or ``["any key"]`` / ``['any key']``. Paths are
parsed when the endpoint is saved (a bad one is a 422 naming it) and evaluated on each
delivery; a path that finds nothing leaves its param out (the job's default applies).
"""

from __future__ import annotations

import re
from typing import Any

MAX_STEPS = 32
MAX_PATH = 300

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)")
_INDEX = re.compile(r"\[(-?\d{1,9})\]")
_QUOTED = re.compile(r"""\[(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\]""")

Step = str | int


class PathError(ValueError):
    """A path outside the supported subset."""


def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of ``path``, or :class:`PathError` saying where it went wrong."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathError("a path starts with $ (for example $.repository.name)")
    if len(path) > MAX_PATH:
        raise PathError(f"a path has at most {MAX_PATH} characters")
    steps: list[Step] = []
    position = 1
    while position < len(path):
        for pattern in (_NAME, _INDEX, _QUOTED):
            match = pattern.match(path, position)
            if match is None:
                continue
            if pattern is _INDEX:
                steps.append(int(match.group(1)))
            elif pattern is _QUOTED:
                raw = match.group(1) if match.group(1) is not None else match.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
            else:
                steps.append(match.group(1))
            position = match.end()
            break
        else:
            raise PathError(f"unexpected {path[position : position + 10]!r} at position {position}")
        if len(steps) > MAX_STEPS:
            raise PathError(f"a path has at most {MAX_STEPS} steps")
    return tuple(steps)


_MISSING = object()


def _follow(payload: Any, steps: tuple[Step, ...]) -> Any:
    value = payload
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return _MISSING
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return _MISSING
            value = value[step]
    return value


def apply_mapping(mapping: dict[str, str], payload: Any) -> dict[str, Any]:
    """The run params ``mapping`` takes from ``payload`` (paths that find nothing omitted)."""
    params: dict[str, Any] = {}
    for name, path in mapping.items():
        value = _follow(payload, parse_path(path))
        if value is not _MISSING:
            params[name] = value
    return params

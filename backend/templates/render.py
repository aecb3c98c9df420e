"""Template parameters: check values against the template's JSON Schema (the subset the
gallery uses) and substitute them into the spec.

``{{ name }}`` in a string of the spec is replaced by the parameter's value; a string that
is nothing but one placeholder takes the value with its type (an integer stays an
integer, a list a list). ``${{ ... }}`` is not a placeholder (the secrets syntax).
"""

from __future__ import annotations

import re
from typing import Any

from backend.core.errors import ValidationFailed

PLACEHOLDER = re.compile(r"(?<!\$)\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _problem(name: str, msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": ["params", name], "msg": msg, "type": type_}


def _check(name: str, value: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    expected = schema.get("type")
    if expected in JSON_TYPES:
        wrong_bool = isinstance(value, bool) and expected in ("integer", "number")
        if wrong_bool or not isinstance(value, JSON_TYPES[expected]):
            return [_problem(name, f"must be of type {expected}", "type_error")]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(_problem(name, f"must be one of {schema['enum']}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(_problem(name, f"must be at least {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(_problem(name, f"must be at most {schema['maximum']}"))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(_problem(name, f"must have at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(_problem(name, f"must have at most {schema['maxLength']} characters"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(_problem(name, f"must match {schema['pattern']}"))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems.extend(_check(f"{name}[{index}]", item, schema["items"]))
    return problems


def resolve(parameters: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values with defaults filled in; every problem in one 422."""
    properties: dict[str, Any] = parameters.get("properties", {})
    problems = [
        _problem(k, "unknown parameter", "extra_forbidden") for k in values if k not in properties
    ]
    resolved: dict[str, Any] = {}
    for name, schema in properties.items():
        if name in values:
            resolved[name] = values[name]
            problems.extend(_check(name, values[name], schema))
        elif "default" in schema:
            resolved[name] = schema["default"]
        elif name in parameters.get("required", []):
            problems.append(_problem(name, "this parameter is required", "missing"))
    if problems:
        first = problems[0]
        raise ValidationFailed(
            f"Invalid template parameters: {first['loc'][1]}: {first['msg']}", details=problems
        )
    return resolved


def substitute(node: Any, values: dict[str, Any]) -> Any:
    """``node`` with every ``{{ name }}`` of a known parameter replaced by its value."""
    if isinstance(node, dict):
        return {key: substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), node
        )
    return node


def render(
    template_spec: dict[str, Any], parameters: dict[str, Any], name: str, values: dict[str, Any]
) -> dict[str, Any]:
    """The job spec a template makes: parameters checked and substituted, ``name`` set,
    and the values merged into the job's ``params`` (tasks see them at run time)."""
    resolved = resolve(parameters, values)
    spec = substitute(template_spec, resolved)
    spec["name"] = name
    spec["params"] = {**spec.get("params", {}), **resolved}
    return dict(spec)

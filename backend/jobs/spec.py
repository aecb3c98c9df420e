"""The job spec: Baton's public job format, shared by the API, the run engine and workers.

A spec is a JSON (or YAML) document::

    name: nightly-etl
    queue: default
    params: {date: "2026-01-01"}
    schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
    tasks:
      - {name: extract, type: shell, command: "echo hello"}
      - {name: notify, type: http, url: https://example.org/hook, depends_on: [extract]}

Validation has three layers, all reported as one ``ValidationFailed`` (422) whose
``details`` are ``{"loc", "msg", "type"}`` entries with ``loc`` a path from the document
root, e.g. ``["tasks", 0, "timeout_seconds"]``:

1. decoding (:func:`parse_job_spec`): UTF-8, JSON or YAML, one JSON-compatible object.
   YAML anchors and aliases are refused (no "billion laughs"), YAML timestamps stay
   strings, duplicate keys, NaN/Infinity, huge integers and deep nesting are refused;
2. the pydantic models below: strict types (``"60"`` is not a number), unknown keys
   refused, every string, list and number bounded;
3. graph checks: duplicate task names, unknown or repeated dependencies,
   self-dependencies and cycles - every problem at once, not only the first.

A validated spec is stored as ``spec.model_dump(mode="json")`` (defaults filled in), and
``JobSpec.model_validate(stored)`` reads it back.
"""

from __future__ import annotations

import functools
import json
import re
import zoneinfo
from collections.abc import Hashable, Iterator
from copy import deepcopy
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import networkx as nx
import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from backend.core.errors import ValidationFailed
from backend.core.input_policy import MAX_DEPTH, value_problems
from backend.secrets.references import reference_problems
from kernel.dag.expressions import ExpressionError, parse_expression
from kernel.secrets import REFERENCE

# ----------------------------------------------------------------------------------- bounds

MAX_TASKS = 1000
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_DELAY_SECONDS = 24 * 3600
MAX_DESCRIPTION = 10_000
MAX_COMMAND = 65_536
MAX_ENV = 200
MAX_ENV_VALUE = 32_768
MAX_HEADERS = 100
MAX_HEADER_VALUE = 8192
MAX_URL = 2048
MAX_PARAMS = 100
MAX_PARAM_KEY = 200
MAX_KWARGS = 100
MAX_DOCKER_ARGS = 1000
MAX_DOCKER_ARG = 32_768
MAX_EXPECT_STATUS = 100
MAX_DETAILS = 100  # problems listed in one error response

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
TASK_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
QUEUE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,255}$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"
PYTHON_FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,199}:[A-Za-z_][A-Za-z0-9_]{0,99}$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
DOCKER_IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
YAML_CONTENT_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)
TASK_TYPES = ("shell", "http", "python", "docker")

JobName = Annotated[str, StringConstraints(pattern=JOB_NAME_PATTERN)]
TaskName = Annotated[str, StringConstraints(pattern=TASK_NAME_PATTERN)]
QueueName = Annotated[str, StringConstraints(pattern=QUEUE_PATTERN)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, StringConstraints(max_length=MAX_ENV_VALUE)]
Env = Annotated[dict[EnvName, EnvValue], Field(max_length=MAX_ENV)]
TimeoutSeconds = Annotated[int, Field(gt=0, le=MAX_TIMEOUT_SECONDS)]
Delay = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ConcurrencyPolicy = Literal["allow", "forbid", "replace"]
TriggerRule = Literal[
    "all_success",
    "all_done",
    "all_failed",
    "one_success",
    "one_failed",
    "none_failed",
    "none_failed_min_one_success",
]
OnFailure = Literal["fail_run", "continue"]
FailurePolicy = Literal["fail_fast", "continue"]
ExpressionText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class SpecModel(BaseModel):
    """Strict and closed: unknown keys and type coercions (``"60"`` for 60) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ----------------------------------------------------------------------------------- models


class RetryPolicy(SpecModel):
    """Exponential backoff: attempt n waits ``min(initial_delay * factor**(n-1), max_delay)``
    seconds (randomised between half and all of it when ``jitter``)."""

    max_attempts: int = Field(default=1, ge=1, le=100, description="1 = no retry")
    initial_delay: Delay = 1.0
    factor: float = Field(default=2.0, ge=1, le=100)
    max_delay: Delay = 300.0
    jitter: bool = True

    @model_validator(mode="after")
    def _delays_in_order(self) -> RetryPolicy:
        if self.max_delay < self.initial_delay:
            if "max_delay" in self.model_fields_set:
                raise ValueError("max_delay must be at least initial_delay")
            self.max_delay = self.initial_delay
        return self


class TaskBase(SpecModel):
    name: TaskName
    depends_on: list[TaskName] = Field(default_factory=list, max_length=MAX_TASKS)
    timeout_seconds: TimeoutSeconds | None = Field(
        default=None, description="One attempt's limit, in seconds"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    queue: QueueName | None = Field(default=None, description="Overrides the job's queue")
    trigger_rule: TriggerRule = Field(
        default="all_success", description="Which upstream outcomes let this task run"
    )
    when: ExpressionText | None = Field(
        default=None,
        description="Condition over params and upstream tasks; false marks the task skipped",
    )
    on_failure: OnFailure = Field(
        default="fail_run",
        description="fail_run: the task's failure fails the run; continue: it does not "
        "(downstream tasks still see it failed)",
    )
    for_each: ExpressionText | None = Field(
        default=None,
        description="Expression giving a list: one child task per item, the item in "
        "$BATON_ITEM (shell) or the `item` argument (python)",
    )


class ShellTask(TaskBase):
    """Runs ``command`` with ``sh -c`` on a worker."""

    type: Literal["shell"]
    command: str = Field(min_length=1, max_length=MAX_COMMAND)
    env: Env = Field(default_factory=dict)


class HttpTask(TaskBase):
    """Calls ``url``; succeeds on a status in ``expect_status`` (any 2xx when null)."""

    type: Literal["http"]
    method: HttpMethod = "GET"
    url: str = Field(min_length=1, max_length=MAX_URL)
    headers: dict[
        Annotated[str, StringConstraints(pattern=HEADER_NAME_PATTERN)],
        Annotated[str, StringConstraints(max_length=MAX_HEADER_VALUE, pattern=r"^[^\r\n]*$")],
    ] = Field(default_factory=dict, max_length=MAX_HEADERS)
    body: Any = Field(default=None, description="Any JSON value; objects are sent as JSON")
    expect_status: (
        Annotated[
            list[Annotated[int, Field(ge=100, le=599)]],
            Field(min_length=1, max_length=MAX_EXPECT_STATUS),
        ]
        | None
    ) = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # A secret reference (``${{ secrets.HOST }}``) is checked as if it were a word;
        # the worker checks the URL again once the value is in it.
        checked = REFERENCE.sub("secret", url)
        if any(c.isspace() or ord(c) < 0x20 for c in checked):
            raise ValueError("the URL must not contain whitespace or control characters")
        try:
            parts = urlsplit(checked)
            _ = parts.port  # raises on a malformed port
        except ValueError as error:
            raise ValueError(f"not a valid URL: {error}") from error
        if parts.scheme not in ("http", "https"):
            raise ValueError("only http and https URLs are allowed")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return url


class PythonTask(TaskBase):
    """Calls ``module.path:function(**kwargs)`` in a worker that has the module installed."""

    type: Literal["python"]
    function: str = Field(pattern=PYTHON_FUNCTION_PATTERN, description="module.path:function")
    kwargs: dict[Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)], Any] = Field(
        default_factory=dict, max_length=MAX_KWARGS
    )
    env: Env = Field(default_factory=dict)


class DockerTask(TaskBase):
    """Runs ``image`` (with ``command`` as its arguments, or the image's default)."""

    type: Literal["docker"]
    image: str = Field(pattern=DOCKER_IMAGE_PATTERN)
    command: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=MAX_DOCKER_ARG)]],
            Field(max_length=MAX_DOCKER_ARGS),
        ]
        | None
    ) = None
    env: Env = Field(default_factory=dict)


Task = Annotated[ShellTask | HttpTask | PythonTask | DockerTask, Field(discriminator="type")]


class Schedule(SpecModel):
    """When the scheduler starts runs. New scheduler options are added here explicitly."""

    cron: str = Field(
        min_length=1,
        max_length=200,
        description="5 fields, or 6 with seconds last (croniter), or @hourly, @daily, ...",
    )
    timezone: str = Field(default="UTC", max_length=64, description="An IANA time zone name")
    misfire: Literal["skip", "fire_once", "fire_all"] = Field(
        default="fire_once",
        description="Instants missed while the scheduler was down or the schedule paused: "
        "skip them, fire once for all of them, or fire each (up to max_catchup)",
    )
    max_catchup: int = Field(default=10, ge=1, le=1000)
    concurrency_policy: ConcurrencyPolicy | None = Field(
        default=None, description="Overrides the job's concurrency_policy for scheduled runs"
    )
    start_at: datetime | None = Field(default=None, description="No fire before (ISO 8601)")
    end_at: datetime | None = Field(default=None, description="No fire after (ISO 8601)")
    paused: bool = False
    jitter_seconds: int = Field(default=0, ge=0, le=3600)
    dst_gap: Literal["shift", "skip"] = Field(
        default="shift",
        description="A wall time that does not exist on a spring-forward night: fire once "
        "at the first valid instant after it (shift), or not at all (skip)",
    )
    dst_overlap: Literal["first", "last", "both"] = Field(
        default="first",
        description="A wall time that happens twice on a fall-back night: fire at its "
        "first occurrence, its last, or both",
    )

    @field_validator("start_at", "end_at", mode="before")
    @classmethod
    def _aware_instant(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("an ISO 8601 instant with a time zone, e.g. 2026-01-01T00:00:00Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as error:
            raise ValueError("an ISO 8601 instant with a time zone") from error
        if parsed.tzinfo is None:
            raise ValueError("the instant needs a time zone (e.g. a trailing Z)")
        return parsed

    @model_validator(mode="after")
    def _window_in_order(self) -> Schedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        expression = cron.strip()
        if expression.startswith("@"):
            if expression not in CRON_ALIASES:
                aliases = ", ".join(sorted(CRON_ALIASES))
                raise ValueError(f"unknown cron alias; use one of {aliases}")
        elif len(expression.split()) not in (5, 6):
            raise ValueError("a cron expression has 5 fields (or 6, with seconds last)")
        if not croniter.is_valid(expression):
            raise ValueError(f"not a valid cron expression: {cron!r}")
        return cron

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, timezone: str) -> str:
        if not is_timezone(timezone):
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name like Europe/Berlin")
        return timezone


RunOutcome = Literal["succeeded", "failed", "cancelled"]
MAX_TRIGGERS = 20


class JobTrigger(SpecModel):
    """Start this job when a run of another job of the tenant finishes with one of
    ``status``; the upstream run's id, job, status and task outputs are the new run's
    ``upstream`` param."""

    on: Literal["run_finished"] = "run_finished"
    job: JobName = Field(description="The upstream job's name")
    status: list[RunOutcome] = Field(
        default_factory=lambda: list[RunOutcome](["succeeded"]), min_length=1, max_length=3
    )


DURATION_PATTERN = r"^[1-9][0-9]{0,5}(s|m|h|d)$"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``"30m"`` -> 1800 (a :data:`DURATION_PATTERN` string)."""
    return int(text[:-1]) * DURATION_UNITS[text[-1]]


class Sla(SpecModel):
    """A run must finish within ``max_duration`` of its start time, and/or by the wall-clock
    time ``finish_by`` (HH:MM in ``timezone``) that first follows its start time. A miss is
    recorded once per run, counted (``baton_sla_misses_total``) and notified (``sla_miss``)."""

    max_duration: Annotated[str, StringConstraints(pattern=DURATION_PATTERN)] | None = Field(
        default=None, description="e.g. 90s, 30m, 2h, 1d"
    )
    finish_by: (
        Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None
    ) = Field(default=None, description="HH:MM, 24-hour clock")
    timezone: str = Field(default="UTC", max_length=64)

    @model_validator(mode="after")
    def _something(self) -> Sla:
        if self.max_duration is None and self.finish_by is None:
            raise ValueError("an sla needs max_duration and/or finish_by")
        if not is_timezone(self.timezone):
            raise ValueError(f"unknown time zone {self.timezone!r}; use an IANA name")
        return self


class JobSpec(SpecModel):
    """A job: defaults for its runs and a DAG of tasks."""

    name: JobName = Field(description="Unique within the tenant")
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    queue: QueueName = "default"
    params: dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_PARAM_KEY)], Any] = (
        Field(default_factory=dict, max_length=MAX_PARAMS, description="Defaults; runs override")
    )
    timeout_seconds: TimeoutSeconds | None = Field(
        default=None, description="Limit for the whole run, in seconds"
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="allow",
        description="When a run starts while one is active: allow it, forbid it (skip), "
        "or replace (cancel) the active one",
    )
    failure_policy: FailurePolicy = Field(
        default="fail_fast",
        description="fail_fast: the first failure that fails the run cancels what is still "
        "running; continue: independent branches finish first",
    )
    schedule: Schedule | None = None
    sla: Sla | None = Field(default=None, description="When a run must be finished by")
    triggers: list[JobTrigger] = Field(
        default_factory=list,
        max_length=MAX_TRIGGERS,
        description="Start a run when a run of another job finishes",
    )
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)

    @model_validator(mode="after")
    def _not_triggered_by_itself(self) -> JobSpec:
        for trigger in self.triggers:
            if trigger.job == self.name:
                raise ValueError("a job cannot be triggered by its own runs (a cycle)")
        return self

    def task(self, name: str) -> ShellTask | HttpTask | PythonTask | DockerTask:
        """The task called ``name`` (``KeyError`` if there is none)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def queue_for(self, task: TaskBase) -> str:
        """The queue a task is dispatched to: its own, else the job's."""
        return task.queue or self.queue


AnyTask = ShellTask | HttpTask | PythonTask | DockerTask


# ---------------------------------------------------------------------------------- helpers


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone known to this system (``zoneinfo``)."""
    if not re.fullmatch(TIMEZONE_PATTERN, name) or len(name) > 64:
        return False
    known = _known_timezones()
    if known:
        return name in known
    try:  # no tz database to list: ask zoneinfo directly
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def dependency_graph(spec: JobSpec) -> nx.DiGraph:
    """Tasks as nodes, an edge ``dependency -> dependent`` for each ``depends_on`` entry."""
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(task.name for task in spec.tasks)
    for task in spec.tasks:
        graph.add_edges_from((dependency, task.name) for dependency in task.depends_on)
    return graph


def topological_order(spec: JobSpec) -> list[str]:
    """Task names, each after all its dependencies; ties keep the declaration order."""
    position = {task.name: index for index, task in enumerate(spec.tasks)}
    ordered = nx.lexicographical_topological_sort(
        dependency_graph(spec), key=lambda name: position[name]
    )
    return list(ordered)


def roots(spec: JobSpec) -> list[str]:
    """Tasks without dependencies (a run starts them first), in declaration order."""
    return [task.name for task in spec.tasks if not task.depends_on]


# ------------------------------------------------------------------------------- decoding


class _SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` minus what a job spec must never contain.

    * anchors and aliases: refused, so a "billion laughs" document cannot expand;
    * duplicate keys: refused instead of silently keeping the last one;
    * timestamps: kept as strings (``date: 2026-01-01`` is the string, as in JSON);
    * keys that YAML 1.1 reads as booleans (``on:``, ``yes:``) stay the strings they are.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConstructorError(
                None, None, "YAML anchors and aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key_node.tag == "tag:yaml.org,2002:bool":  # `on:` is a key, not True (YAML 1.1)
                key = key_node.value
            if not isinstance(key, Hashable):
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                )
            if key in mapping:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _problem(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _refuse(message: str, type_: str, loc: list[str | int] | None = None) -> ValidationFailed:
    return ValidationFailed(message, details=[_problem(loc or [], message, type_)])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise _refuse(
            f"Invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            "json_invalid",
        ) from error
    except ValueError as error:  # duplicate keys, NaN, integers too long to parse
        raise _refuse(f"Invalid JSON: {error}", "json_invalid") from error
    except RecursionError as error:
        raise _refuse("Invalid JSON: nested too deeply", "json_invalid") from error


def _decode_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ", ".join(p for p in (error.context, error.problem) if p) or "malformed"
        raise _refuse(f"Invalid YAML{where}: {problem}", "yaml_invalid") from error
    except yaml.YAMLError as error:
        raise _refuse(f"Invalid YAML: {error}", "yaml_invalid") from error
    except RecursionError as error:
        raise _refuse("Invalid YAML: nested too deeply", "yaml_invalid") from error
    except ValueError as error:  # e.g. an integer literal too long to convert
        raise _refuse(f"Invalid YAML: {error}", "yaml_invalid") from error


def _json_problems(value: Any, loc: list[str | int]) -> Iterator[dict[str, Any]]:
    """Why ``value`` is not plain JSON that PostgreSQL's jsonb can store, if it is not: the
    input policy every request body meets (``backend.core.input_policy``), and JSON types
    only (YAML can express others)."""
    yield from value_problems(value, loc)
    yield from _foreign_types(value, loc)


def _foreign_types(value: Any, loc: list[str | int], depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > MAX_DEPTH:
        return  # value_problems reports it
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield _problem([*loc, str(key)], "keys must be strings", "key_type")
            else:
                yield from _foreign_types(item, [*loc, key], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _foreign_types(item, [*loc, index], depth + 1)
    elif not isinstance(value, str | int | float | bool) and value is not None:
        yield _problem(loc, f"a {type(value).__name__} is not a JSON value", "json_type")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_document(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a request body to a JSON object: YAML for a YAML content type, else JSON."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _refuse(
            f"The body is not valid UTF-8 (byte {error.start})", "unicode_invalid"
        ) from error
    is_yaml = _media_type(content_type) in YAML_CONTENT_TYPES
    document = _decode_yaml(text) if is_yaml else _decode_json(text)
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {type(document).__name__}"
        raise _refuse(
            f"A job spec must be a {'YAML mapping' if is_yaml else 'JSON object'}, not {kind}",
            "object_type",
        )
    problems = list(_json_problems(document, []))
    if problems:
        raise _failed(problems)
    return document


# ----------------------------------------------------------------------------- validation


def _pydantic_problems(error: ValidationError) -> list[dict[str, Any]]:
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = list(item["loc"])
        # A tagged union puts the tag into the path: ("tasks", 0, "shell", "command").
        if len(loc) > 2 and loc[0] == "tasks" and isinstance(loc[1], int) and loc[2] in TASK_TYPES:
            del loc[2]
        msg = str(item["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        problems.append(_problem(loc, msg, str(item["type"])))
    return problems


def _graph_problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Duplicate names, unknown, repeated or self dependencies, and cycles, read leniently
    from the raw document so they are reported alongside any field errors."""
    tasks = document.get("tasks")
    if not isinstance(tasks, list) or len(tasks) > MAX_TASKS:
        return []
    entries: list[tuple[int, str, list[tuple[int, str]]]] = []
    for index, task in enumerate(tasks):
        if isinstance(task, dict) and isinstance(task.get("name"), str):
            raw = task.get("depends_on")
            deps = (
                [(j, d) for j, d in enumerate(raw) if isinstance(d, str)]
                if isinstance(raw, list)
                else []
            )
            entries.append((index, task["name"], deps))

    problems: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, name, _ in entries:
        if name in first_index:
            problems.append(
                _problem(
                    ["tasks", index, "name"],
                    f"duplicate task name {name!r} (also task {first_index[name]})",
                    "duplicate_task",
                )
            )
        else:
            first_index[name] = index

    graph: nx.DiGraph = nx.DiGraph()  # edge: task -> a task it depends on
    graph.add_nodes_from(first_index)
    edge_loc: dict[tuple[str, str], list[str | int]] = {}
    for index, name, deps in entries:
        seen: set[str] = set()
        for j, dependency in deps:
            loc: list[str | int] = ["tasks", index, "depends_on", j]
            if dependency in seen:
                problems.append(
                    _problem(loc, f"{dependency!r} is listed twice", "duplicate_dependency")
                )
                continue
            seen.add(dependency)
            if dependency == name:
                problems.append(
                    _problem(loc, f"task {name!r} depends on itself", "self_dependency")
                )
            elif dependency not in first_index:
                problems.append(_problem(loc, f"unknown task {dependency!r}", "unknown_dependency"))
            else:
                graph.add_edge(name, dependency)
                edge_loc.setdefault((name, dependency), loc)

    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        start = min(component, key=lambda name: first_index[name])
        cycle = nx.find_cycle(graph.subgraph(component), source=start)
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        problems.append(
            _problem(
                edge_loc[(cycle[0][0], cycle[0][1])],
                f"cycle: {' -> '.join(names)} (each depends on the next)",
                "dependency_cycle",
            )
        )
    return problems


def _expression_problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    """``when`` and ``for_each`` must parse, and may only read tasks upstream of their own
    (a task's output exists only once it has run)."""
    tasks = document.get("tasks")
    if not isinstance(tasks, list):
        return []
    graph: nx.DiGraph = nx.DiGraph()  # edge: dependency -> dependent
    for task in tasks:
        if isinstance(task, dict) and isinstance(task.get("name"), str):
            graph.add_node(task["name"])
            for dependency in task.get("depends_on") or []:
                if isinstance(dependency, str):
                    graph.add_edge(dependency, task["name"])
    acyclic = nx.is_directed_acyclic_graph(graph)
    problems: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        for field in ("when", "for_each"):
            text = task.get(field)
            if not isinstance(text, str):
                continue
            loc: list[str | int] = ["tasks", index, field]
            try:
                expression = parse_expression(text)
            except ExpressionError as error:
                problems.append(_problem(loc, str(error), "invalid_expression"))
                continue
            name = task.get("name")
            upstream = nx.ancestors(graph, name) if acyclic and name in graph else set()
            for reference in sorted(expression.task_references - upstream):
                problems.append(
                    _problem(
                        loc,
                        f"refers to task {reference!r}, which is not upstream of {name!r}"
                        " (add it to depends_on, directly or through another task)",
                        "not_upstream",
                    )
                )
            if field == "for_each" and not expression.roots:  # a constant: check it now
                try:
                    value = expression.evaluate({})
                except ExpressionError as error:
                    problems.append(_problem(loc, str(error), "invalid_expression"))
                    continue
                if not isinstance(value, list):
                    problems.append(
                        _problem(loc, "for_each must give a list", "for_each_not_a_list")
                    )
    return problems


def _failed(problems: list[dict[str, Any]]) -> ValidationFailed:
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    message = f"The job spec is not valid: {where + ': ' if where else ''}{first['msg']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return ValidationFailed(message, details=problems[:MAX_DETAILS])


def validate_job_spec(document: dict[str, Any]) -> JobSpec:
    """Validate a decoded document; every field and graph problem in one ValidationFailed."""
    problems = list(_json_problems(document, []))
    spec: JobSpec | None = None
    if not problems:
        try:
            spec = JobSpec.model_validate(document)
        except ValidationError as error:
            problems.extend(_pydantic_problems(error))
        problems.extend(_graph_problems(document))
        problems.extend(_expression_problems(document))
        problems.extend(reference_problems(document))
    if problems or spec is None:
        raise _failed(problems or [_problem([], "invalid job spec", "invalid")])
    return spec


def parse_job_spec(body: bytes, content_type: str | None) -> JobSpec:
    """Decode and validate a request body (YAML for a YAML content type, JSON otherwise)."""
    return validate_job_spec(decode_document(body, content_type))


def stored_form(spec: JobSpec) -> dict[str, Any]:
    """The spec as stored in ``job_versions.spec``: plain JSON, defaults filled in
    (``triggers`` and ``sla`` left out when empty, so specs stored before they existed
    compare equal)."""
    stored = spec.model_dump(mode="json")
    for later in ("triggers", "sla"):
        if not stored.get(later):
            stored.pop(later, None)
    return stored


# ---------------------------------------------------------------------------- JSON schema


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(definitions[name], definitions), **_inline(extra, definitions)}
        result = {}
        for key, value in node.items():
            if key == "$defs":
                continue
            if key == "discriminator" and isinstance(value, dict):
                value = {"propertyName": value["propertyName"]}  # mapping refs are gone
            result[key] = _inline(value, definitions)
        return result
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


@functools.cache
def _schema() -> dict[str, Any]:
    schema = JobSpec.model_json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def job_spec_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`JobSpec` with no ``$ref`` (embeddable in OpenAPI)."""
    return deepcopy(_schema())

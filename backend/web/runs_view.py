"""What the runs pages show, built from the run services' answers: list filters, the task
table's order, the log pane, and Server-Sent Events frames of rendered HTML."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from urllib.parse import quote, urlencode

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.principal import Principal
from backend.runs import service as runs_service
from backend.runs.schemas import LogLinePublic, RunDetail, RunGraph, RunGraphNode, TaskRunPublic
from backend.web.graph_svg import dag_svg
from kernel.dag.status import FINISHED_RUN, FINISHED_TASK, RunStatus

RUN_STATUSES = [status.value for status in RunStatus]
INSTANT_INPUT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> reads and writes
LOG_PANE_LINES = 2000


def parse_instant(text: str) -> datetime:
    """An instant typed into a filter: ISO 8601, with or without an offset (UTC if none)."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass
class RunFilters:
    """The run list's filters, from the query string; ``errors`` holds what did not parse."""

    statuses: list[str] = field(default_factory=list)
    job_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    errors: dict[str, str] = field(default_factory=dict)
    typed: dict[str, str] = field(default_factory=dict)  # to refill the form as it was

    @classmethod
    def parse(
        cls, *, statuses: list[str], job: str, created_after: str, created_before: str
    ) -> RunFilters:
        filters = cls(typed={"job": job, "created_after": created_after})
        filters.typed["created_before"] = created_before
        unknown = [s for s in statuses if s and s not in RUN_STATUSES]
        if unknown:
            filters.errors["status"] = f"Unknown status {unknown[0]!r}"
        filters.statuses = [s for s in dict.fromkeys(statuses) if s in RUN_STATUSES]
        if job.strip():
            try:
                filters.job_id = uuid.UUID(job.strip())
            except ValueError:
                filters.errors["job"] = "Not a job id"
        for name in ("created_after", "created_before"):
            raw = filters.typed[name]
            if not raw.strip():
                continue
            try:
                instant = parse_instant(raw)
            except (ValueError, OverflowError):
                filters.errors[name] = "Not a date and time (YYYY-MM-DDTHH:MM, UTC)"
                continue
            setattr(filters, name, instant)
            filters.typed[name] = instant.strftime(INSTANT_INPUT)
        return filters

    def query(self, **extra: str) -> str:
        """This filter as a query string (for the next page's link)."""
        pairs: list[tuple[str, str]] = [("status", s) for s in self.statuses]
        if self.job_id:
            pairs.append(("job", str(self.job_id)))
        for name in ("created_after", "created_before"):
            instant: datetime | None = getattr(self, name)
            if instant is not None:
                pairs.append((name, instant.isoformat()))
        pairs.extend(extra.items())
        return urlencode(pairs)


@dataclass(frozen=True)
class TaskRow:
    """A row of the run page's task table; for_each children follow their group."""

    task: TaskRunPublic
    node: RunGraphNode | None  # the spec task (top-level rows only)
    depth: int


def task_rows(run: RunDetail, graph: RunGraph) -> list[TaskRow]:
    """The run's tasks in the graph's order (layer by layer), children after their group."""
    order = {name: index for index, name in enumerate(chain.from_iterable(graph.layers))}
    nodes = {node.name: node for node in graph.nodes}
    children: dict[uuid.UUID, list[TaskRunPublic]] = {}
    for task in run.tasks:
        if task.parent_id is not None:
            children.setdefault(task.parent_id, []).append(task)
    top = [t for t in run.tasks if t.parent_id is None]
    rows: list[TaskRow] = []
    for task in sorted(top, key=lambda t: (order.get(t.name, len(order)), t.name)):
        rows.append(TaskRow(task=task, node=nodes.get(task.name), depth=0))
        for child in sorted(children.get(task.id, []), key=lambda c: c.map_index or 0):
            rows.append(TaskRow(task=child, node=None, depth=1))
    return rows


def default_log_task(rows: list[TaskRow]) -> str | None:
    """The task whose log the run page opens with: running, else failed, else one that ran."""
    for wanted in ("running", "failed"):
        for row in rows:
            if row.task.status == wanted:
                return row.task.name
    ran = [row.task.name for row in rows if row.task.attempt > 0]
    if ran:
        return ran[0]
    return rows[0].task.name if rows else None


@dataclass(frozen=True)
class LogPane:
    """One task's log as the page shows it, and where its live tail starts."""

    run_id: uuid.UUID
    task: TaskRunPublic
    lines: list[LogLinePublic]
    truncated: bool

    @property
    def finished(self) -> bool:
        return self.task.status in FINISHED_TASK

    @property
    def live_url(self) -> str:
        """The live tail: the current attempt's lines after those shown."""
        current = [line.seq for line in self.lines if line.attempt == self.task.attempt]
        query: dict[str, int] = {"after": current[-1] if current else 0}
        if self.task.attempt > 0:
            query["attempt"] = self.task.attempt
        return f"{task_url(self.run_id, self.task.name)}/logs/live?{urlencode(query)}"


def task_url(run_id: uuid.UUID, task: str) -> str:
    return f"/runs/{run_id}/tasks/{quote(task, safe='')}"


async def run_context(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID
) -> dict[str, Any]:
    """What the run page's live part shows: header, DAG and task table."""
    run = await runs_service.get_run(session, principal, run_id)
    graph = await runs_service.get_graph(session, principal, run_id)
    names = await runs_service.job_names(session, principal, [run.job_id])
    statuses = {node.name: node.status for node in graph.nodes}
    links = {
        node.name: f"/runs/{run_id}?task={node.name}#logs" for node in graph.nodes
    }  # task names are URL-safe ([A-Za-z0-9_.-])
    return {
        "principal": principal,
        "run": run,
        "job_name": names.get(run.job_id),
        "params_json": params_json(run.params),
        "finished": run.status in FINISHED_RUN,
        "dag": dag_svg(
            graph.layers,
            [(edge.source, edge.target) for edge in graph.edges],
            statuses=statuses,
            links=links,
        ),
        "rows": task_rows(run, graph),
    }


async def log_pane(
    session: AsyncSession, principal: Principal, context: dict[str, Any], task: str | None
) -> LogPane | None:
    """The log of ``task`` (or of the task the page opens with) as far as it is written."""
    rows = context["rows"]
    name = task or default_log_task(rows)
    if name is None:
        return None
    run = context["run"]
    lines, more = await runs_service.read_logs(
        session, principal, run.id, task=name, attempt=None, cursor=None, limit=LOG_PANE_LINES
    )
    selected = next(row.task for row in rows if row.task.name == name)
    return LogPane(run_id=run.id, task=selected, lines=lines, truncated=more is not None)


def params_json(params: dict[str, Any]) -> str:
    """A run's params for reading (escaped by the template like any other text)."""
    return json.dumps(params, indent=2, sort_keys=True, default=str)


def sse_event(event: str, html: str) -> str:
    """One Server-Sent Event carrying HTML; every line of it is a ``data:`` line."""
    data = "\n".join(f"data: {line}" for line in (html.splitlines() or [""]))
    return f"event: {event}\n{data}\n\n"


SSE_RETRY = "retry: 2000\n\n"
SSE_KEEPALIVE = ": keep-alive\n\n"
SSE_END = "event: end\ndata: end\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

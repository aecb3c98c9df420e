"""``baton runs``: trigger (and wait, following logs), list, get, logs, cancel, rerun."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from baton_client.context import api
from baton_client.http import Api
from baton_client.output import Output, OutputOption, emit, errors, fail, waiting

app = typer.Typer(help="Runs: trigger, follow, inspect, cancel, rerun.")

RUN_COLUMNS = ["id", "job_id", "status", "trigger", "created_at", "finished_at", "reason"]
TASK_COLUMNS = ["name", "status", "attempt", "worker", "started_at", "finished_at", "error"]
FINISHED = {"succeeded", "failed", "cancelled"}
POLL_SECONDS = 0.5
LOG_PAGE = 1000


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that is valid JSON (42, true, [1]) is taken as such."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--param wants key=value, not {pair!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def follow(client: Api, run_id: str, *, show_logs: bool) -> dict[str, Any]:
    """Wait for the run to finish, printing its log lines as they arrive; the run.

    Without logs to show, a spinner with the run's status is shown on stderr while
    waiting (only when stderr is a terminal).

    The logs endpoint gives a cursor only after a full page, so the last partial page is
    read again on the next poll and lines already printed are recognised by their
    (task, attempt, seq).
    """
    if not show_logs:
        with waiting(f"run {run_id}: waiting") as update:
            while True:
                run = client.get(f"/api/v1/runs/{run_id}")
                if run["status"] in FINISHED:
                    return dict(run)
                update(f"run {run_id}: {run['status']}")
                time.sleep(POLL_SECONDS)
    cursor: str | None = None
    printed: set[tuple[str, int, int]] = set()
    while True:
        run = client.get(f"/api/v1/runs/{run_id}")
        while True:
            page = client.get(f"/api/v1/runs/{run_id}/logs", cursor=cursor, limit=LOG_PAGE)
            for line in page["items"]:
                key = (line["task"], line["attempt"], line["seq"])
                if key not in printed:
                    printed.add(key)
                    typer.echo(f"[{line['task']}] {line['line']}")
            if not page.get("next_cursor"):
                break
            cursor = page["next_cursor"]
            printed.clear()  # everything up to the cursor is behind us for good
        if run["status"] in FINISHED:
            return dict(run)
        time.sleep(POLL_SECONDS)


def _finish(run: dict[str, Any], output: Output) -> None:
    """Print the finished run; exit 1 unless it succeeded."""
    if output is Output.table:
        errors.print(
            f"run {run['id']} {run['status']}" + (f": {run['reason']}" if run["reason"] else ""),
            style="green" if run["status"] == "succeeded" else "red",
            markup=False,
            highlight=False,
        )
    else:
        emit(run, output)
    if run["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("trigger")
def trigger(
    job: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run; exit 1 unless it succeeds")] = False,
    follow_logs: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the logs (implies --wait)")
    ] = False,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    output: OutputOption = Output.table,
) -> None:
    """Run a job now."""
    client = api()
    body: dict[str, Any] = {"params": parse_params(param or [])}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    run = client.post(f"/api/v1/jobs/{client.job_id(job)}/runs", body)
    if not (wait or follow_logs):
        emit(run, output, RUN_COLUMNS)
        return
    if output is Output.table:
        errors.print(f"run {run['id']} {run['status']}", markup=False, highlight=False)
    _finish(follow(client, run["id"], show_logs=follow_logs), output)


@app.command("list")
def list_runs(
    job: Annotated[str | None, typer.Option(help="Only this job's runs (name or id)")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    output: OutputOption = Output.table,
) -> None:
    """Runs, newest first."""
    client = api()
    job_id = client.job_id(job) if job else None
    page = client.get("/api/v1/runs", job_id=job_id, status=status, limit=limit)
    emit(page["items"], output, RUN_COLUMNS)


@app.command("get")
def get_run(run_id: str, output: OutputOption = Output.table) -> None:
    """A run with its tasks."""
    run = api().get(f"/api/v1/runs/{run_id}")
    if output is Output.table:
        emit(run, output, [*RUN_COLUMNS, "params"])
        emit(run["tasks"], output, TASK_COLUMNS, title="tasks")
    else:
        emit(run, output)


@app.command("logs")
def logs(
    run_id: str,
    task: Annotated[str | None, typer.Option(help="Only this task's lines")] = None,
    follow_logs: Annotated[bool, typer.Option("--follow", "-f", help="Until the run ends")] = False,
    output: OutputOption = Output.table,
) -> None:
    """A run's log lines (``--follow``: keep printing until the run finishes)."""
    client = api()
    if follow_logs:
        _finish(follow(client, run_id, show_logs=True), output)
        return
    lines = client.pages(f"/api/v1/runs/{run_id}/logs", task=task, limit=1000)
    if output is Output.table:
        for line in lines:
            typer.echo(f"[{line['task']}] {line['line']}")
    else:
        emit(lines, output)


@app.command("cancel")
def cancel(run_id: str, output: OutputOption = Output.table) -> None:
    """Cancel a queued or running run."""
    emit(api().post(f"/api/v1/runs/{run_id}/cancel"), output, RUN_COLUMNS)


@app.command("rerun")
def rerun(
    run_id: str,
    from_failed: Annotated[
        bool, typer.Option("--from-failed", help="Keep what succeeded; run the rest")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait; exit 1 unless it succeeds")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Run again with the same job version and params."""
    client = api()
    run = client.post(f"/api/v1/runs/{run_id}/rerun", {"from_failed": from_failed})
    if wait:
        _finish(follow(client, run["id"], show_logs=False), output)
    else:
        emit(run, output, RUN_COLUMNS)

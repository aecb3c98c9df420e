"""``baton jobs``: list, get, export, delete, and GitOps apply/diff of a directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from baton_client.context import api
from baton_client.output import Output, OutputOption, console, emit, fail, waiting

app = typer.Typer(help="Jobs: list, inspect, export, delete; apply a directory (GitOps).")

JOB_COLUMNS = ["name", "id", "current_version", "queue", "managed_by", "updated_at"]
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# The most jobs POST /api/v1/jobs:apply takes in one request (the server's MAX_APPLY_JOBS).
MAX_APPLY_JOBS = 500
ACTION_STYLE = {
    "created": "green",
    "updated": "yellow",
    "adopted": "cyan",
    "deleted": "red",
    "unchanged": "dim",
}


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    return {key: job.get(key) for key in JOB_COLUMNS}


@app.command("list")
def list_jobs(
    output: OutputOption = Output.table,
    name: Annotated[str | None, typer.Option(help="Name prefix")] = None,
) -> None:
    """The tenant's jobs, newest first."""
    jobs = api().pages("/api/v1/jobs", name=name, limit=200)
    if output is Output.table:
        emit([_summary(job) for job in jobs], output, JOB_COLUMNS)
    else:
        emit(jobs, output)


@app.command("get")
def get_job(job: str, output: OutputOption = Output.table) -> None:
    """One job (by name or id) with its current spec."""
    client = api()
    found = client.get(f"/api/v1/jobs/{client.job_id(job)}")
    if output is Output.table:
        emit({**_summary(found), "tasks": [t["name"] for t in found["spec"]["tasks"]]}, output)
    else:
        emit(found, output)


@app.command("export")
def export_jobs(
    job: Annotated[
        str | None, typer.Argument(help="A job's name or id; all jobs if omitted")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", "-d", help="Write one <name>.yaml per job here")
    ] = None,
    output: OutputOption = Output.yaml,
) -> None:
    """A job's spec as YAML (or JSON): the format `jobs apply` reads back."""
    client = api()
    if job is not None:
        specs = [client.get(f"/api/v1/jobs/{client.job_id(job)}")["spec"]]
    else:
        specs = [found["spec"] for found in client.pages("/api/v1/jobs", limit=200)]
    if directory is None:
        if output is Output.table:
            output = Output.yaml  # a spec is a document, not a table
        for spec in specs:
            emit(spec, output)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        path = directory / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), "utf-8")
        console.print(f"wrote {path}", markup=False, highlight=False)


@app.command("delete")
def delete_job(
    job: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Delete a job (its past runs stay)."""
    client = api()
    job_id = client.job_id(job)
    if not yes and not typer.confirm(f"Delete job {job}?", err=True):
        raise typer.Exit(1)
    client.delete(f"/api/v1/jobs/{job_id}")
    if output is Output.table:
        console.print(f"deleted {job}", markup=False, highlight=False)
    else:
        emit({"deleted": "job", "name": job, "id": job_id}, output)


def read_specs(directory: Path) -> list[dict[str, Any]]:
    """Every job spec under ``directory`` (``*.yaml``, ``*.yml``, ``*.json``; a YAML file
    may hold several documents), in path order."""
    if not directory.is_dir():
        raise fail(f"{directory} is not a directory")
    specs: list[dict[str, Any]] = []
    for path in sorted(p for p in directory.rglob("*") if p.suffix in SPEC_SUFFIXES):
        text = path.read_text(encoding="utf-8")
        try:
            documents = (
                [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
            )
        except (ValueError, yaml.YAMLError) as error:
            raise fail(f"{path}: {error}") from error
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict):
                raise fail(f"{path}: a job spec must be a mapping")
            specs.append(document)
    return specs


def _default_source(directory: Path) -> str:
    return f"baton:{directory.resolve().name or 'root'}"


def _print_plan(result: dict[str, Any], output: Output, *, applying: bool = False) -> None:
    if output is not Output.table:
        emit(result, output)
        return
    for change in result["changes"]:
        style = ACTION_STYLE.get(change["action"], "")
        versions = f"v{change['from_version'] or '-'} -> v{change['to_version'] or '-'}"
        console.print(
            f"{change['action']:>9}  {change['name']}  ({versions})",
            style=style,
            markup=False,
            highlight=False,
        )
        for line in change["diff"].splitlines():
            colour = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            console.print(f"           {line}", style=colour, markup=False, highlight=False)
    counts = ", ".join(f"{n} {action}" for action, n in sorted(result["summary"].items()))
    prefix = "Plan" if result["dry_run"] else "Applied"
    if applying and all(c["action"] == "unchanged" for c in result["changes"]):
        prefix = "Up to date"
    console.print(f"{prefix}: {counts or 'nothing to do'}", markup=False, highlight=False)


SourceOption = Annotated[
    str | None,
    typer.Option(
        "--managed-by",
        envvar="BATON_MANAGED_BY",
        help="The source owning these jobs (default: baton:<directory name>); prune "
        "deletes only its jobs",
    ),
]
FileOption = Annotated[Path, typer.Option("--file", "-f", help="Directory of job specs")]
PruneOption = Annotated[
    bool, typer.Option(help="Delete the source's jobs that are not in the directory")
]


def _request(directory: Path, managed_by: str | None, prune: bool, dry_run: bool) -> Any:
    """The apply request for ``directory``; refused here when it holds more jobs than one
    request takes. Splitting it would give up the one-transaction apply (and with
    ``--prune`` each part would delete the others' jobs), so the CLI does not."""
    specs = read_specs(directory)
    if len(specs) > MAX_APPLY_JOBS:
        raise fail(
            f"{directory} holds {len(specs)} jobs; one apply takes at most {MAX_APPLY_JOBS}. "
            "Split the jobs into directories of at most that many, each with its own "
            "--managed-by source, and apply each of them."
        )
    return {
        "managed_by": managed_by or _default_source(directory),
        "jobs": specs,
        "prune": prune,
        "dry_run": dry_run,
    }


@app.command("diff")
def diff(
    file: FileOption,
    managed_by: SourceOption = None,
    prune: PruneOption = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 2 when applying would change something")
    ] = False,
    output: OutputOption = Output.table,
) -> None:
    """What `jobs apply` would change, as a diff per job; changes nothing."""
    result = api().post("/api/v1/jobs:apply", _request(file, managed_by, prune, True))
    _print_plan(result, output)
    if exit_code and any(c["action"] != "unchanged" for c in result["changes"]):
        raise typer.Exit(2)


@app.command("apply")
def apply(
    file: FileOption,
    managed_by: SourceOption = None,
    prune: PruneOption = False,
    dry_run: Annotated[bool, typer.Option(help="Only show the diff")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Create, update (and with --prune delete) jobs to match a directory of specs.

    The server's plan is computed first; it is applied with the versions it was computed
    from, so when someone else changes one of these jobs in between, nothing is applied
    (409) rather than silently overwriting their change.
    """
    client = api()
    body = _request(file, managed_by, prune, True)
    with waiting(f"planning {len(body['jobs'])} jobs"):
        plan = client.post("/api/v1/jobs:apply", body)
    if dry_run or all(change["action"] == "unchanged" for change in plan["changes"]):
        _print_plan(plan, output, applying=not dry_run)
        return
    body["dry_run"] = False
    body["expected_versions"] = {c["name"]: c["from_version"] for c in plan["changes"]}
    changing = sum(change["action"] != "unchanged" for change in plan["changes"])
    with waiting(f"applying {changing} changes"):
        result = client.post("/api/v1/jobs:apply", body)
    _print_plan(result, output)

"""``baton templates``: the gallery and the tenant's own; make a job from one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from baton_client.context import api
from baton_client.output import Output, OutputOption, console, emit
from baton_client.runs import parse_params

app = typer.Typer(help="Job templates: list, show, use; save a job as a template.")


def _parameters(template: dict[str, Any]) -> list[dict[str, Any]]:
    schema = template["parameters"]
    required = set(schema.get("required", []))
    return [
        {
            "parameter": name,
            "type": spec.get("type", ""),
            "required": name in required,
            "default": json.dumps(spec["default"]) if "default" in spec else "",
            "description": spec.get("description") or spec.get("title") or "",
        }
        for name, spec in schema.get("properties", {}).items()
    ]


@app.command("list")
def list_templates(output: OutputOption = Output.table) -> None:
    """The built-in gallery, then the tenant's own templates."""
    templates = api().get("/api/v1/templates")
    if output is Output.table:
        emit(templates, output, ["name", "title", "source"])
    else:
        emit(templates, output)


@app.command("show")
def show(template: str, output: OutputOption = Output.table) -> None:
    """A template's parameters (with defaults) and spec."""
    found = api().get(f"/api/v1/templates/{template}")
    if output is Output.table:
        console.print(f"{found['title']}: {found['description'] or ''}", markup=False)
        emit(_parameters(found), output, title="parameters")
    else:
        emit(found, output)


@app.command("use")
def use(
    template: str,
    job_name: Annotated[str, typer.Argument(help="The new job's name")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the job spec; create nothing")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Create a job from a template (parameters not given take their defaults)."""
    body = {"job_name": job_name, "params": parse_params(param or []), "dry_run": dry_run}
    result = api().post(f"/api/v1/templates/{template}/instantiate", body)
    if dry_run:
        emit(result["spec"], Output.yaml if output is Output.table else output)
    elif output is Output.table:
        job = result["job"]
        console.print(f"created job {job['name']} ({job['id']})", markup=False)
    else:
        emit(result["job"], output)


@app.command("save")
def save(
    job: str,
    name: Annotated[str, typer.Argument(help="The template's name")],
    title: Annotated[str | None, typer.Option()] = None,
    output: OutputOption = Output.table,
) -> None:
    """Save one of your jobs as a template; its params become the parameters."""
    client = api()
    body = {"name": name, "job_id": client.job_id(job), "title": title}
    saved = client.post("/api/v1/templates", {k: v for k, v in body.items() if v is not None})
    if output is Output.table:
        emit(_parameters(saved), output, title=f"template {saved['name']}")
    else:
        emit(saved, output)


@app.command("delete")
def delete(template: str, output: OutputOption = Output.table) -> None:
    """Delete one of your templates."""
    api().delete(f"/api/v1/templates/{template}")
    if output is Output.table:
        console.print(f"deleted template {template}", markup=False)
    else:
        emit({"deleted": "template", "name": template}, output)

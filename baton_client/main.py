"""The ``baton`` command: the API client, plus the server's commands when installed.

Client commands (login, jobs, runs, schedules, templates, tokens) talk to a Baton server
over HTTP and need only this package. The server's own commands (dev, api, scheduler,
worker, db, redis, admin, audit, secrets) live in ``backend.cli`` and are imported only
when one of them is asked for, so the client runs where the server's dependencies are not
installed.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from baton_client import jobs, misc, runs, templates
from baton_client.config import Profile, config_path, list_profiles, save_profile
from baton_client.context import select_profile
from baton_client.http import Api, ApiError
from baton_client.output import Output, OutputOption, console, emit, errors

SERVER_COMMANDS = (
    "dev",
    "api",
    "scheduler",
    "worker",
    "db",
    "redis",
    "admin",
    "audit",
    "secrets",
)

app = typer.Typer(
    help="Baton: multi-tenant job orchestration.",
    epilog="Server commands (full installation): "
    + ", ".join(SERVER_COMMANDS)
    + ". See `baton <command> --help`.",
    no_args_is_help=True,
)
app.add_typer(jobs.app, name="jobs")
app.add_typer(runs.app, name="runs")
app.add_typer(misc.schedules, name="schedules")
app.add_typer(templates.app, name="templates")
app.add_typer(misc.tokens, name="tokens")


@app.callback()
def root(
    profile: Annotated[
        str | None, typer.Option("--profile", envvar="BATON_PROFILE", help="Profile to use")
    ] = None,
) -> None:
    """Baton: multi-tenant job orchestration."""
    select_profile(profile)


@app.command()
def login(
    url: Annotated[str, typer.Option(prompt="Baton URL", help="e.g. https://baton.example.com")],
    token: Annotated[str, typer.Option(prompt="API token", hide_input=True, envvar="BATON_TOKEN")],
    profile: Annotated[str, typer.Option("--profile", help="Profile name")] = "default",
    output: OutputOption = Output.table,
) -> None:
    """Check a URL and API token against the server and save them as a profile."""
    candidate = Profile(name=profile, url=url.rstrip("/"), token=token)
    Api(candidate).get("/api/v1/jobs", limit=1)
    path = save_profile(profile, candidate.url, token)
    if output is Output.table:
        console.print(
            f"Logged in to {candidate.url} as profile {profile!r} (saved in {path})",
            markup=False,
            highlight=False,
        )
    else:
        emit({"profile": profile, "url": candidate.url, "config": str(path)}, output)


@app.command()
def profiles(output: OutputOption = Output.table) -> None:
    """The saved profiles (never their tokens)."""
    found = list_profiles()
    if output is Output.table:
        emit(found, output, ["name", "url", "default"], title=str(config_path()))
    else:
        emit(found, output)


def _server(argv: list[str]) -> None:
    try:
        from backend.cli import app as server_app
    except ImportError as error:
        errors.print(
            f"`baton {argv[0]}` is a server command: install the full baton package ({error})",
            style="red",
            markup=False,
        )
        raise SystemExit(1) from error
    server_app(args=argv, prog_name="baton")


def main() -> None:
    """Entry point of the ``baton`` console script."""
    argv = sys.argv[1:]
    if argv and argv[0] in SERVER_COMMANDS:
        _server(argv)
        return
    try:
        app(prog_name="baton")
    except ApiError as error:
        detail = f" (HTTP {error.status})" if error.status else ""
        errors.print(f"Error: {error}{detail}", style="red", markup=False, highlight=False)
        if isinstance(error.details, list):
            for problem in error.details[:10]:
                if isinstance(problem, dict):
                    where = ".".join(str(p) for p in problem.get("loc", []))
                    errors.print(f"  {where}: {problem.get('msg')}", markup=False)
        raise SystemExit(1) from error

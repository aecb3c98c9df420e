"""``baton schedules`` and ``baton tokens``."""

from __future__ import annotations

from typing import Annotated

import typer

from baton_client.context import api
from baton_client.output import Output, OutputOption, console, emit

schedules = typer.Typer(help="Schedules: upcoming fires and the tick ledger.")
tokens = typer.Typer(help="API tokens: for CI and this CLI.")


@schedules.command("next")
def next_fires(
    job: str,
    count: Annotated[int, typer.Option(min=1, max=100)] = 5,
    output: OutputOption = Output.table,
) -> None:
    """The job's next fire times."""
    client = api()
    preview = client.get(f"/api/v1/jobs/{client.job_id(job)}/schedule/next", count=count)
    if output is Output.table:
        emit(preview["items"], output, title=f"next fires ({preview['timezone']})")
    else:
        emit(preview, output)


@schedules.command("ticks")
def ticks(
    job: str,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    output: OutputOption = Output.table,
) -> None:
    """What the scheduler did at each due instant (fired, skipped, missed)."""
    client = api()
    page = client.get(f"/api/v1/jobs/{client.job_id(job)}/schedule/ticks", limit=limit)
    emit(page["items"], output)


@tokens.command("list")
def list_tokens(output: OutputOption = Output.table) -> None:
    """The tenant's API tokens (never their secrets)."""
    emit(api().get("/api/v1/tokens"), output)


@tokens.command("create")
def create_token(
    name: str,
    role: Annotated[str, typer.Option(help="viewer, operator, editor, admin")] = "editor",
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    output: OutputOption = Output.table,
) -> None:
    """Create an API token; its secret is shown once."""
    body = {"name": name, "role": role, "expires_in_days": expires_in_days}
    emit(api().post("/api/v1/tokens", body), output)


@tokens.command("delete")
def delete_token(token_id: str, output: OutputOption = Output.table) -> None:
    """Revoke an API token."""
    api().delete(f"/api/v1/tokens/{token_id}")
    if output is Output.table:
        console.print(f"revoked {token_id}", markup=False, highlight=False)
    else:
        emit({"revoked": "token", "id": token_id}, output)

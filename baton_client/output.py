"""``--output table|json|yaml`` for every command."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table, json or yaml", envvar="BATON_OUTPUT")
]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def emit(
    data: Any, output: Output, columns: Sequence[str] | None = None, *, title: str | None = None
) -> None:
    """Print ``data`` (a dict or a list of dicts) as a table, JSON or YAML."""
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if output is Output.yaml:
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
        return
    rows = data if isinstance(data, list) else None
    if rows is None:
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key in columns or list(data):
            table.add_row(key, _cell(data.get(key)))
    else:
        table = Table(title=title)
        names = list(columns or (rows[0].keys() if rows else []))
        for name in names:
            table.add_column(name)
        for row in rows:
            table.add_row(*(_cell(row.get(name)) for name in names))
    console.print(table)


@contextmanager
def waiting(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner with ``message`` on stderr while the caller waits; it yields a function
    that changes the message. Only when stderr is a terminal: piped or redirected output
    (CI, scripts) gets nothing, so it stays clean."""
    if not errors.is_terminal:
        yield lambda _text: None
        return
    with errors.status(message, spinner="dots") as status:
        yield lambda text: status.update(text)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error to stderr; the ``typer.Exit`` to raise."""
    errors.print(f"Error: {message}", style="red", markup=False, highlight=False)
    return typer.Exit(code)

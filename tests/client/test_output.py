"""The client's output helpers, without a server: the progress spinner on stderr."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from baton_client import output


def _console(monkeypatch: pytest.MonkeyPatch, *, terminal: bool) -> StringIO:
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=100)
    monkeypatch.setattr(output, "errors", console)
    return buffer


def test_a_spinner_is_shown_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = _console(monkeypatch, terminal=True)
    with output.waiting("run 42: waiting") as update:
        update("run 42: running")
    shown = buffer.getvalue()
    assert "run 42: running" in shown
    assert "\x1b[?25l" in shown, "a live display hides the cursor while it spins"


def test_nothing_is_written_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = _console(monkeypatch, terminal=False)
    with output.waiting("run 42: waiting") as update:
        update("run 42: running")
    assert buffer.getvalue() == ""

"""Every command of the server's CLI is reachable through the ``baton`` client entry point."""

from __future__ import annotations

from backend.cli import app as server
from baton_client.main import SERVER_COMMANDS


def test_every_server_command_is_handed_to_the_server() -> None:
    commands = {
        info.name or (info.callback.__name__ if info.callback else "")
        for info in server.registered_commands
    }
    groups = {info.name for info in server.registered_groups}
    assert commands | groups == set(SERVER_COMMANDS)

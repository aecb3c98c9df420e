"""The nightly-report template posts its command's standard output to the webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Account
from tests.templates.helpers import run_template


class _Receiver(ThreadingHTTPServer):
    bodies: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(
            {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": self.rfile.read(length).decode(),
            }
        )
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A webhook receiver on a free loopback port that keeps every body posted to it."""
    httpd = _Receiver(("127.0.0.1", 0), _Handler)
    httpd.bodies = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def test_the_report_is_the_commands_output(
    client: AsyncClient, owner: Account, receiver: _Receiver, running_worker: object
) -> None:
    port = receiver.server_address[1]
    # Shell metacharacters in the URL stay data: it reaches the command through the
    # environment, not pasted into the command text.
    webhook = f"http://127.0.0.1:{port}/hook?a=1&b=$(touch%20pwned);x"
    command = "echo 'rows: 42'; echo \"done at $(echo noon)\""
    run = await run_template(
        client, owner, "nightly-report", {"webhook": webhook, "report_command": command}
    )
    assert run["status"] == "succeeded", run
    [posted] = receiver.bodies
    assert posted["path"] == "/hook?a=1&b=$(touch%20pwned);x"
    assert posted["content_type"] == "application/json"
    assert json.loads(posted["body"]) == {"text": "rows: 42\ndone at noon\n"}


async def test_a_failing_report_command_posts_nothing(
    client: AsyncClient, owner: Account, receiver: _Receiver, running_worker: object
) -> None:
    webhook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    run = await run_template(
        client, owner, "nightly-report", {"webhook": webhook, "report_command": "echo half; exit 4"}
    )
    assert run["status"] == "failed", run
    assert receiver.bodies == []

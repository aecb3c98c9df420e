"""A real local HTTP receiver (127.0.0.1, a thread) for outgoing notifications: it checks
each request's ``Baton-Signature`` the way docs/notifications.md tells receivers to, and
answers with the statuses it is told to (then 200)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE = 300


def verify(secret: str, header: str | None, body: bytes) -> bool:
    """Check ``Baton-Signature: t=<unix>,v1=<hex>`` over ``<t>.<body>`` (as documented)."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


@dataclass
class Receiver:
    url: str
    secret: str
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    received: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        record = self.server.record
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record.received.append(
            {
                "path": self.path,
                "verified": verify(record.secret, self.headers.get("Baton-Signature"), body),
                "event": self.headers.get("Baton-Event"),
                "delivery": self.headers.get("Baton-Delivery"),
                "body": json.loads(body),
            }
        )
        status = record.statuses.pop(0) if record.statuses else 200
        answer = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Server(ThreadingHTTPServer):
    record: Receiver


@contextmanager
def receiving(secret: str) -> Iterator[Receiver]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.record = Receiver(url=f"http://127.0.0.1:{httpd.server_address[1]}/hook", secret=secret)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.record
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

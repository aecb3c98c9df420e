"""A local stand-in for the Stripe API endpoints Baton calls (api.stripe.com cannot be
reached from the tests): a real HTTP server on 127.0.0.1 that the real ``stripe`` library
talks to through ``BATON_STRIPE_API_BASE``, answering customers, Checkout and Portal
sessions in Stripe's shapes and recording every request (form-decoded) for the tests.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class FakeStripe:
    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def calls(self, path: str) -> list[dict[str, str]]:
        """The form parameters of every request to ``path``, oldest first."""
        return [r["form"] for r in self.requests if r["path"] == path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        self.server.fake.requests.append(
            {
                "path": self.path,
                "form": form,
                "authorization": self.headers.get("Authorization"),
                "idempotency_key": self.headers.get("Idempotency-Key"),
            }
        )
        short = uuid.uuid4().hex[:14]
        if self.path == "/v1/customers":
            body: dict[str, Any] = {
                "id": f"cus_{short}",
                "object": "customer",
                "email": form.get("email"),
            }
        elif self.path == "/v1/checkout/sessions":
            body = {
                "id": f"cs_test_{short}",
                "object": "checkout.session",
                "mode": "subscription",
                "customer": form.get("customer"),
                "url": f"https://checkout.stripe.test/c/pay/cs_test_{short}",
            }
        elif self.path == "/v1/billing_portal/sessions":
            body = {
                "id": f"bps_{short}",
                "object": "billing_portal.session",
                "customer": form.get("customer"),
                "url": f"https://billing.stripe.test/p/session/{short}",
            }
        else:
            self._reply(404, {"error": {"type": "invalid_request_error", "message": "no route"}})
            return
        self._reply(200, body)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_fake")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    fake: FakeStripe


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.fake = FakeStripe(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

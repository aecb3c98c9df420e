"""A local stand-in for the Stripe API endpoints Baton calls (api.stripe.com cannot be
reached from the tests): a real HTTP server on 127.0.0.1 that the real ``stripe`` library
talks to through ``BATON_STRIPE_API_BASE``, answering customers, Checkout and Portal
sessions, Billing Meter events and invoice lists in Stripe's shapes and recording every
request (form-decoded) for the tests.

Meter events behave as Stripe documents them: an event whose ``identifier`` was seen
before is not counted again, and a request repeated with the same ``Idempotency-Key``
gets the first answer again. ``hold_meter_events`` makes the server take (and count) a
meter event but keep its answer back until released: the window in which a reporter can
die after Stripe has the usage and before it has recorded that it was sent.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class FakeStripe:
    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Meter events counted, by identifier; answers already given, by idempotency key.
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Invoices answered by GET /v1/invoices, by customer (newest first, as Stripe lists).
    invoices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    held: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, path: str) -> list[dict[str, str]]:
        """The form parameters of every request to ``path``, oldest first."""
        return [r["form"] for r in self.requests if r["path"] == path]

    def metered(self, customer: str, event_name: str) -> int:
        """The usage Stripe would bill: the sum of the counted events' values."""
        return sum(
            int(e["payload[value]"])
            for e in self.meter_events.values()
            if e["payload[stripe_customer_id]"] == customer and e["event_name"] == event_name
        )

    def hold_meter_events(self) -> threading.Event:
        """Count meter events but keep the answers back until the event returned is set."""
        self.held = threading.Event()
        return self.held

    def add_invoice(self, customer: str, **fields: Any) -> dict[str, Any]:
        short = uuid.uuid4().hex[:14]
        invoice = {
            "id": f"in_{short}",
            "object": "invoice",
            "customer": customer,
            "number": f"BATON-{len(self.invoices.get(customer, [])) + 1:04d}",
            "status": "paid",
            "amount_due": 2900,
            "amount_paid": 2900,
            "currency": "eur",
            "created": int(time.time()),
            "hosted_invoice_url": f"https://invoice.stripe.test/i/{short}",
            "invoice_pdf": f"https://pay.stripe.test/invoice/{short}/pdf",
            **fields,
        }
        self.invoices.setdefault(customer, []).insert(0, invoice)
        return invoice


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
        if self.path == "/v1/billing/meter_events":
            self._meter_event(form, self.headers.get("Idempotency-Key"))
            return
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

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        self.server.fake.requests.append({"path": url.path, "form": query})
        if url.path != "/v1/invoices":
            self._reply(404, {"error": {"type": "invalid_request_error", "message": "no route"}})
            return
        listed = self.server.fake.invoices.get(query.get("customer", ""), [])
        limit = int(query.get("limit") or 10)
        self._reply(
            200,
            {
                "object": "list",
                "url": "/v1/invoices",
                "has_more": len(listed) > limit,
                "data": listed[:limit],
            },
        )

    def _meter_event(self, form: dict[str, str], key: str | None) -> None:
        fake = self.server.fake
        with fake.lock:
            if key is not None and key in fake.replies:
                self._reply(200, fake.replies[key])
                return
            identifier = form.get("identifier") or uuid.uuid4().hex
            fake.meter_events.setdefault(identifier, form)  # a known identifier: not again
            body = {
                "object": "billing.meter_event",
                "created": int(time.time()),
                "event_name": form.get("event_name"),
                "identifier": identifier,
                "livemode": False,
                "payload": {
                    "stripe_customer_id": form.get("payload[stripe_customer_id]"),
                    "value": form.get("payload[value]"),
                },
                "timestamp": int(form.get("timestamp") or time.time()),
            }
            if key is not None:
                fake.replies[key] = body
        if fake.held is not None:
            fake.held.wait(timeout=30)
        try:
            self._reply(200, body)
        except OSError:
            return  # the client is gone (the reporter was stopped while it waited)

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

"""ASGI middleware: request ids, body size limit, last-resort error answer.

Pure ASGI (not ``BaseHTTPMiddleware``) so request bodies stream and context variables set
here reach the endpoint.
"""

from __future__ import annotations

import json
import re
import uuid

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.errors import error_body

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` mid-body; an HTTPException so the app's handler answers 413."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


class RequestMiddleware:
    """Gives every request an id, caps its body, and answers unhandled errors as JSON 500s."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_json(send, 413, request_id, "payload_too_large", "Request body too large")
            return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, capped_receive, send_with_id)
        except _BodyTooLarge:
            if not started:
                await _send_json(
                    send, 413, request_id, "payload_too_large", "Request body too large"
                )
        except Exception:
            log.exception("http.unhandled_error", path=scope.get("path"))
            if not started:
                await _send_json(send, 500, request_id, "internal_error", "Internal server error")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            # fullmatch: ``$`` alone would accept a trailing newline into a response header.
            return candidate if _SAFE_REQUEST_ID.fullmatch(candidate) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, request_id: str, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (REQUEST_ID_HEADER, request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""One input policy for every request: what a body, a form and a query string may hold.

PostgreSQL refuses text with NUL characters (``text`` and ``jsonb`` alike) and text that is
not valid UTF-8 (a lone surrogate such as ``"\\ud800"`` has no UTF-8 encoding); its ``jsonb``
has no NaN or Infinity; and Python's ``json`` module happily parses all three. Left to each
endpoint, one that forgets a check answers a 500. So the check is made once, for every
request, before routing:

- **text** (values and object keys): no NUL, no lone surrogate, valid UTF-8;
- **numbers**: finite (no ``NaN``, ``Infinity``, nor ``1e400`` which parses as infinity),
  integers within 64 bits;
- **nesting**: at most :data:`MAX_DEPTH` levels (the job spec's own limit);
- **size**: a body up to ``max_request_bytes`` (``RequestMiddleware``, 413), a query string
  up to :data:`MAX_QUERY_BYTES`.

:class:`InputPolicyMiddleware` applies it to every query string, path, JSON body (a JSON
media type, or none) and form (urlencoded; multipart: no NUL byte), and answers a refusal as
``ValidationFailed`` (422 ``validation_failed``, details ``[{"loc", "msg", "type"}]``) -
JSON on the API, an HTML page on the dashboard - before any endpoint runs. Bodies of other
media types are checked where they are decoded with :func:`value_problems` (the job spec's
YAML). ``RequestModel`` runs the same walk on its input (``backend.core.schemas``), so a
model built outside HTTP (CLI, dashboard forms) gets it too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.errors import ValidationFailed, error_response

MAX_DEPTH = 32  # nesting of a whole document: a value inside 32 containers is the deepest
MAX_INT = 2**63 - 1
MAX_QUERY_BYTES = 8192
MAX_PROBLEMS = 100  # problems listed in one answer

Loc = list[str | int]
Problem = dict[str, Any]


def problem(loc: Loc, msg: str, type_: str) -> Problem:
    """One entry of a 422's ``details``."""
    return {"loc": loc, "msg": msg, "type": type_}


def text_problem(text: str) -> tuple[str, str] | None:
    """(message, type) when ``text`` cannot be stored by PostgreSQL, else None."""
    if "\x00" in text:
        return "text must not contain NUL characters", "string_nul"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must not contain lone surrogates (not valid Unicode)", "string_surrogate"
    return None


def value_problems(value: Any, loc: Loc | None = None, depth: int = 0) -> Iterator[Problem]:
    """Why a decoded document is not plain JSON that PostgreSQL can store, if it is not.

    Types other than JSON's are skipped (``RequestModel`` walks Python values too); a
    decoder that may produce them (YAML) checks for them itself.
    """
    loc = loc if loc is not None else []
    if depth > MAX_DEPTH:
        yield problem(loc, f"nested more than {MAX_DEPTH} levels deep", "too_deep")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (bad := text_problem(key)):
                yield problem([*loc, _printable(key)], f"a key: {bad[0]}", bad[1])
            else:
                yield from value_problems(item, [*loc, key], depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from value_problems(item, [*loc, index], depth + 1)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -MAX_INT - 1 <= value <= MAX_INT:
            yield problem(loc, "integers must fit in 64 bits", "int_range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield problem(loc, "NaN and infinite numbers are not allowed", "float_finite")
    elif isinstance(value, str) and (bad := text_problem(value)):
        yield problem(loc, bad[0], bad[1])


def _printable(text: str) -> str:
    """A refused key, safe to put in a JSON answer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _rejected(problems: list[Problem], what: str) -> ValidationFailed:
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    return ValidationFailed(
        f"The {what} is not acceptable: {where}: {first['msg']}", details=problems[:MAX_PROBLEMS]
    )


def check_json_body(body: bytes, *, declared: bool) -> None:
    """Refuse a JSON body the policy does not allow. Syntax errors are left to the endpoint's
    own parser, which refuses them in its own words; so are bytes that are not UTF-8 in a
    body that does not say it is JSON (``declared``)."""
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        if not declared:
            return
        msg = f"the body is not valid UTF-8 (byte {error.start})"
        raise _rejected([problem(["body"], msg, "unicode_invalid")], "request body") from error
    except RecursionError as error:
        msg = f"nested more than {MAX_DEPTH} levels deep"
        raise _rejected([problem(["body"], msg, "too_deep")], "request body") from error
    except json.JSONDecodeError:
        return
    except ValueError as error:  # an integer literal too long to convert
        raise _rejected([problem(["body"], str(error), "int_range")], "request body") from error
    if problems := list(value_problems(document, ["body"])):
        raise _rejected(problems, "request body")


def check_urlencoded(raw: bytes, where: str) -> None:
    """Refuse a query string or urlencoded form whose names or values the policy does not
    allow (NUL, invalid UTF-8 - which includes encoded surrogates)."""
    problems: list[Problem] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        decoded: list[str | None] = []
        for piece in (name, value):
            try:
                decoded.append(unquote_to_bytes(piece.replace(b"+", b" ")).decode("utf-8"))
            except UnicodeDecodeError:
                decoded.append(None)
        label = decoded[0] if decoded[0] is not None else "?"
        loc: Loc = [where, _printable(label)]
        if None in decoded:
            problems.append(problem(loc, "not valid UTF-8", "unicode_invalid"))
        elif bad := text_problem(decoded[0] or "") or text_problem(decoded[1] or ""):
            problems.append(problem(loc, bad[0], bad[1]))
    if problems:
        raise _rejected(problems, "query string" if where == "query" else "form")


def check_path(path: str) -> None:
    if bad := text_problem(path):
        raise _rejected([problem(["path"], bad[0], bad[1])], "path")


def check_multipart(body: bytes) -> None:
    """A multipart form may hold no NUL byte: its fields are text, and no route takes file
    uploads (one that does will need a per-part check instead)."""
    if b"\x00" in body:
        msg = "text must not contain NUL characters"
        raise _rejected([problem(["form"], msg, "string_nul")], "form")


_JSON_TYPES = ("application/json",)
_FORM_TYPE = "application/x-www-form-urlencoded"
_MULTIPART_TYPE = "multipart/form-data"


def _media_type(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class InputPolicyMiddleware:
    """Checks every request's path, query string and JSON or form body against the policy
    before the app sees it. Sits inside ``RequestMiddleware`` (request id, size cap)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        media = _media_type(scope)
        checks_body = _has_body(scope) and (
            media is None
            or media in _JSON_TYPES
            or media.endswith("+json")
            or media in (_FORM_TYPE, _MULTIPART_TYPE)
        )
        body = b""
        if checks_body:
            received = await _read_body(receive)
            if received is None:
                return  # the client went away before sending its whole body
            body = received
        try:
            check_path(scope.get("path", ""))
            query: bytes = scope.get("query_string", b"")
            if len(query) > MAX_QUERY_BYTES:
                msg = f"longer than {MAX_QUERY_BYTES} bytes"
                raise _rejected([problem(["query"], msg, "too_long")], "query string")
            check_urlencoded(query, "query")
            if checks_body and body:
                if media == _FORM_TYPE:
                    check_urlencoded(body, "form")
                elif media == _MULTIPART_TYPE:
                    check_multipart(body)
                else:
                    check_json_body(body, declared=media is not None)
        except ValidationFailed as refused:
            response = await error_response(Request(scope), refused)
            await response(scope, receive, send)
            return
        if not checks_body:
            await self.app(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (``RequestMiddleware`` outside has capped it already); None if the
    client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

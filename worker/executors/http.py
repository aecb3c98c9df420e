"""HTTP tasks, with a guard against server-side request forgery (SSRF).

Spec: ``method`` (default GET), ``url`` (http or https only), ``headers`` (dict),
``body`` (a string is sent as is, anything else as JSON), ``expect_status`` (list of ints,
default 200-299). Output: ``{"status_code", "headers" (lower-case names), "body"}`` - the
body parsed when the response is JSON, else text, and cut at ``policy.max_output_bytes``
(then ``"truncated": true`` is added). A status outside ``expect_status`` fails the task
with that output. Redirects are never followed: a 3xx is just a status.

The guard. Before anything is sent, the URL's host is resolved once (``loop.getaddrinfo``)
and the task is refused if *any* address is loopback, private, link-local, multicast,
reserved, unspecified, shared/CGNAT (100.64.0.0/10), otherwise not globally routable,
cloud metadata (169.254.169.254, fd00:ec2::254), or an IPv6 address embedding one of those
(IPv4-mapped, NAT64 64:ff9b::/96, 6to4, Teredo). Every such address must be covered by
``policy.http_allowlist``: an entry is either a hostname (exact, case-insensitive: it
allows whatever that name resolves to) or an address/CIDR (allows the addresses inside it).
Metadata addresses are special: only an allowlist entry naming that very address (a /32 or
/128) lets them through - neither a hostname nor a wider CIDR does. Anything that fails to
parse as an address (``http://2130706433/``, ``http://0x7f.1/``) goes through the resolver
like a name, so it is judged by the address it really means.

Pinning (DNS rebinding). A name that resolves to a public address during the check and to
an internal one a millisecond later must not win, so the request is sent to the *checked
address itself*: the URL's host is replaced by the IP, the ``Host`` header carries the
original name, and for https the ``sni_hostname`` request extension makes httpcore send the
original name as SNI and verify the certificate against it (not against the IP). httpx
never resolves the name again. When a name has several checked addresses they are tried in
order, moving on only when the connection itself fails (nothing was sent). The client is
built with ``trust_env=False``: a proxy taken from the environment would resolve the name
itself and defeat the pin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from kernel.egress import (
    Allowlist,
    RefusedAddress,
    Resolver,
    checked_addresses,
)
from kernel.egress import parse_ip as _parse_ip
from kernel.wire.protocol import ExecutionResult, TaskMessage
from worker.executors.base import (
    ExecutorPolicy,
    LogSink,
    LogWriter,
    SpecError,
    require_str,
    truncate_utf8,
)

logger = logging.getLogger(__name__)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_EXPECT = tuple(range(200, 300))
_READ_CHUNK = 64 * 1024


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class _Request:
    method: str
    url: httpx.URL
    host: str  # ASCII (IDNA) form, no brackets
    port: int
    headers: dict[str, str]
    content: bytes | None
    expect_status: frozenset[int]


class HttpExecutor:
    """Runs ``http`` tasks; see the module docstring.

    ``resolver`` (host, port -> addresses) and ``verify`` (the TLS trust: ``True`` for the
    system/certifi bundle, or an ``ssl.SSLContext`` for a private CA) are injectable.
    """

    def __init__(
        self,
        policy: ExecutorPolicy,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.policy = policy
        self._allowlist = Allowlist.parse(policy.http_allowlist)
        self._resolver = resolver or system_resolver
        self._verify = verify

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Check the destination, send the request, and judge the status."""
        writer = LogWriter(log, self.policy.max_log_bytes)
        try:
            request = _parse_spec(message.spec)
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))

        try:
            addresses = await checked_addresses(
                request.host, request.port, self._allowlist, self._resolver
            )
        except RefusedAddress as exc:
            logger.warning(
                "worker.http.refused",
                extra={"task_run_id": message.task_run_id, "host": request.host},
            )
            await writer.write("system", str(exc))
            return ExecutionResult.failed(str(exc))

        timeout = httpx.Timeout(message.timeout_seconds)
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=timeout, verify=self._verify
        ) as client:
            try:
                response_output, status, truncated = await self._send(
                    client, request, addresses, writer
                )
            except httpx.TimeoutException as exc:
                return ExecutionResult.failed(
                    f"{type(exc).__name__}: {exc or 'timed out'}", reason="timeout"
                )
            except httpx.HTTPError as exc:
                return ExecutionResult.failed(f"{type(exc).__name__}: {exc}")

        await writer.write(
            "system",
            f"{request.method} {_loggable(request.url)} -> {status}"
            + (f" (body cut at {self.policy.max_output_bytes} bytes)" if truncated else ""),
        )
        logger.info(
            "worker.http.finished",
            extra={"task_run_id": message.task_run_id, "status_code": status},
        )
        if status not in request.expect_status:
            return ExecutionResult.failed(f"unexpected status {status}", output=response_output)
        return ExecutionResult.ok(response_output)

    async def _send(
        self,
        client: httpx.AsyncClient,
        request: _Request,
        addresses: list[str],
        writer: LogWriter,
    ) -> tuple[dict[str, Any], int, bool]:
        host_is_ip = _parse_ip(request.host) is not None
        host_header = _bracket(request.host) + (
            f":{request.url.port}" if request.url.port is not None else ""
        )
        last_error: httpx.ConnectError | None = None
        for address in addresses:
            target = request.url if host_is_ip else request.url.copy_with(host=address)
            extensions: dict[str, Any] = {}
            if request.url.scheme == "https" and not host_is_ip:
                extensions["sni_hostname"] = request.host
            outgoing = client.build_request(
                request.method,
                target,
                headers={**request.headers, "Host": host_header},
                content=request.content,
                extensions=extensions,
            )
            try:
                response = await client.send(outgoing, stream=True)
            except httpx.ConnectError as exc:
                # Nothing was sent: the next checked address may answer.
                last_error = exc
                await writer.write("system", f"cannot connect to {address}: {exc}")
                continue
            try:
                body, truncated = await self._read_body(response)
            finally:
                await response.aclose()
            output: dict[str, Any] = {
                "status_code": response.status_code,
                "headers": dict(response.headers.items()),
                "body": body,
            }
            if truncated:
                output["truncated"] = True
            return output, response.status_code, truncated
        assert last_error is not None  # addresses is never empty
        raise last_error

    async def _read_body(self, response: httpx.Response) -> tuple[Any, bool]:
        limit = self.policy.max_output_bytes
        buffer = bytearray()
        truncated = False
        async for chunk in response.aiter_bytes(_READ_CHUNK):
            buffer += chunk
            if len(buffer) > limit:
                truncated = True
                break
        raw = bytes(buffer[:limit])
        encoding = response.charset_encoding or "utf-8"
        try:
            text = raw.decode(encoding, errors="replace")
        except LookupError:
            text = raw.decode("utf-8", errors="replace")
        if truncated:
            text, _ = truncate_utf8(text, limit)
            return text, True
        if _is_json(response.headers.get("content-type", "")) and text.strip():
            try:
                return json.loads(text), False
            except json.JSONDecodeError:
                return text, False
        return text, False


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _loggable(url: httpx.URL) -> str:
    """The URL without credentials or query string (either may carry secrets)."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_spec(spec: dict[str, Any]) -> _Request:
    method = require_str(spec, "method", default="GET").upper()
    if method not in METHODS:
        raise SpecError(f"spec.method must be one of {', '.join(sorted(METHODS))}")
    raw_url = require_str(spec, "url")
    try:
        url = httpx.URL(raw_url)
    except httpx.InvalidURL as exc:
        raise SpecError(f"spec.url is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise SpecError(f"spec.url must be http or https, not {url.scheme or 'no scheme'!r}")
    host = url.raw_host.decode("ascii").strip("[]")
    if not host:
        raise SpecError("spec.url has no host")
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)

    raw_headers = spec.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise SpecError("spec.headers must be an object")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        if not isinstance(name, str) or not name:
            raise SpecError(f"spec.headers has an invalid name: {name!r}")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SpecError(f"spec.headers.{name} must be a string or number")
        if name.lower() == "host":
            continue  # the executor sets Host itself (see the pinning notes)
        headers[name] = str(value)

    body = spec.get("body")
    content: bytes | None
    if body is None:
        content = None
    elif isinstance(body, str):
        content = body.encode("utf-8")
    else:
        try:
            content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SpecError(f"spec.body is not JSON-serialisable: {exc}") from exc
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"

    expect = spec.get("expect_status")
    if expect is None:
        expect_status = frozenset(DEFAULT_EXPECT)
    elif (
        isinstance(expect, list)
        and expect
        and all(isinstance(code, int) and not isinstance(code, bool) for code in expect)
    ):
        expect_status = frozenset(expect)
    else:
        raise SpecError("spec.expect_status must be a non-empty list of status codes")
    return _Request(method, url, host, port, headers, content, expect_status)

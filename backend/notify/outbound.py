"""Outgoing notification traffic through the egress guard (``kernel/egress.py``), the one
the http task executor uses: the host is resolved once, refused if any address is
loopback, private, link-local, metadata, ... unless ``notification_allowlist`` allows it,
and the request goes to the checked address itself (the name in ``Host`` and, for https,
as SNI), so a name that re-resolves elsewhere (DNS rebinding) cannot redirect it. Redirects
are not followed; proxies from the environment are not used.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from backend.core.settings import Settings
from kernel.egress import Allowlist, RefusedAddress, checked_addresses, parse_ip

MAX_RESPONSE = 1000

__all__ = ["Outcome", "RefusedAddress", "post", "send_mail"]


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: str


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


async def _checked(settings: Settings, host: str, port: int) -> list[str]:
    return await checked_addresses(
        host,
        port,
        Allowlist.parse(tuple(settings.notification_allowlist)),
        _resolve,
        allowlist_name="BATON_NOTIFICATION_ALLOWLIST",
    )


async def post(settings: Settings, url: str, *, content: bytes, headers: dict[str, str]) -> Outcome:
    """POST ``content`` to ``url`` (http/https) through the guard; the response's status and
    the start of its body. ``RefusedAddress`` for a forbidden or unresolvable host,
    ``httpx.HTTPError`` when nothing answers."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        raise RefusedAddress("the URL is not valid") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RefusedAddress("only http and https URLs are allowed")
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _checked(settings, host, port)
    host_is_ip = parse_ip(host) is not None
    host_header = (f"[{host}]" if ":" in host else host) + (
        f":{parsed.port}" if parsed.port else ""
    )
    timeout = settings.notification_timeout_seconds
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        last_error: httpx.ConnectError | None = None
        for address in addresses:
            target = parsed if host_is_ip else parsed.copy_with(host=address)
            extensions: dict[str, Any] = {}
            if parsed.scheme == "https" and not host_is_ip:
                extensions["sni_hostname"] = host
            request = client.build_request(
                "POST", target, headers={**headers, "Host": host_header}, content=content,
                extensions=extensions,
            )  # fmt: skip
            try:
                response = await client.send(request)
            except httpx.ConnectError as error:  # nothing sent: try the next address
                last_error = error
                continue
            return Outcome(response.status_code, response.text[:MAX_RESPONSE])
    assert last_error is not None
    raise last_error


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    mail_from: str


def _send_mail(server: SmtpServer, address: str, to: list[str], subject: str, body: str) -> str:
    message = EmailMessage()
    message["From"] = server.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(address, server.port, timeout=30) as smtp:
        # Connected by address; STARTTLS must verify the certificate against the name.
        smtp._host = server.host  # type: ignore[attr-defined]
        if server.starttls:
            smtp.starttls()
        if server.username:
            smtp.login(server.username, server.password or "")
        refused = smtp.send_message(message)
        code, text = smtp.noop()
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)
    return f"{code} {text.decode(errors='replace')}"


async def send_mail(
    settings: Settings, server: SmtpServer, to: list[str], subject: str, body: str
) -> Outcome:
    """Send one mail through ``server`` (its address checked by the guard, connected to by
    that address); ``smtplib.SMTPException`` / ``OSError`` on failure."""
    addresses = await _checked(settings, server.host, server.port)
    answer = await asyncio.to_thread(_send_mail, server, addresses[0], to, subject, body)
    return Outcome(250, answer[:MAX_RESPONSE])

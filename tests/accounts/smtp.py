"""What the tests' SMTP server (aiosmtpd) received."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.fixtures.waiting import eventually

TOKEN = re.compile(r"\?token=([A-Za-z0-9_\-]+)")


class Inbox:
    """Every message the server accepted, parsed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


async def mail_to(inbox: Inbox, address: str, count: int = 1) -> Message:
    """The ``count``-th message to ``address`` (waits for it)."""
    found = await eventually(
        lambda: inbox.to(address), lambda got: len(got) >= count, what=f"mail to {address}"
    )
    return found[count - 1]


def link_in(message: Message) -> str:
    """The path and query of the link a mail carries (``/verify-email?token=...``)."""
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"https://baton\.test(/[^\s]+)", body.decode())
    assert match, body
    return match.group(1)


def token_in(message: Message) -> str:
    match = TOKEN.search(link_in(message))
    assert match
    return match.group(1)

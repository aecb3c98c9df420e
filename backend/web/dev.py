"""Development only: ``/dev/mail``, the mails this process sent or logged (verification,
password reset, invitations), newest first, their links clickable - so a local user of
``baton dev`` follows them without a mail server.

Answers 404 unless ``BATON_ENVIRONMENT`` is dev and the browser is on this machine (a
loopback address): the page shows live reset links, which must never be reachable from
elsewhere.
"""

from __future__ import annotations

import ipaddress
import re

from fastapi import APIRouter, Request, Response
from markupsafe import Markup, escape

from backend.accounts.mail import DEV_OUTBOX
from backend.core.deps import SettingsDep
from backend.core.errors import NotFound
from backend.web.render import page
from backend.web.session import MaybeWebPrincipal

router = APIRouter(include_in_schema=False)

LINK = re.compile(r"https?://[^\s<>\"']+")


def _from_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def linked(body: str) -> Markup:
    """The mail's text, escaped, with its links made clickable."""
    out, last = [], 0
    for match in LINK.finditer(body):
        url = match.group(0)
        out.append(escape(body[last : match.start()]))
        out.append(Markup('<a href="{0}" data-testid="mail-link">{0}</a>').format(url))
        last = match.end()
    out.append(escape(body[last:]))
    return Markup("").join(out)


@router.get("/dev/mail")
async def sent_mail(
    request: Request, settings: SettingsDep, principal: MaybeWebPrincipal
) -> Response:
    """The mails of this process, newest first (development, on this machine only)."""
    if not settings.is_dev or not _from_loopback(request):
        raise NotFound("Not found")
    mails = [{"item": item, "body": linked(item.mail.body)} for item in reversed(DEV_OUTBOX)]
    return page(request, "dev/mail.html", {"principal": principal, "mails": mails})

"""HMAC signature schemes: those an inbound webhook endpoint can require, and the one
Baton signs its own outgoing webhooks with (the ``stripe`` form under ``Baton-Signature``).

* ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``.
* ``stripe``: ``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
  "<t>.<body>")>`` (several ``v1`` allowed, for secret rotation); the timestamp must be
  within the endpoint's tolerance of now, so an old captured request cannot be replayed.

Comparisons are constant-time. Both schemes sign the raw body, never a re-serialisation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SCHEMES = ("none", "github", "stripe")
GITHUB_HEADER = "x-hub-signature-256"
STRIPE_HEADER = "stripe-signature"
MAX_HEADER = 2000


class SignatureRefused(ValueError):
    """The request's signature is missing, malformed, wrong or too old (the message says)."""


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_github(secret: str, body: bytes) -> str:
    return f"sha256={_hmac(secret, body)}"


def sign_stripe(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={_hmac(secret, str(timestamp).encode() + b'.' + body)}"


def verify(
    scheme: str,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int,
) -> str:
    """Check the request's signature under ``scheme``; return the signature header (whose
    digest marks it as used) or raise :class:`SignatureRefused`."""
    header_name = GITHUB_HEADER if scheme == "github" else STRIPE_HEADER
    header = headers.get(header_name)
    if not header:
        raise SignatureRefused(f"missing {header_name} header")
    if len(header) > MAX_HEADER:
        raise SignatureRefused(f"{header_name} header too long")
    if scheme == "github":
        if not header.startswith("sha256="):
            raise SignatureRefused("malformed signature: expected sha256=<hex>")
        if not hmac.compare_digest(header.encode(), sign_github(secret, body).encode()):
            raise SignatureRefused("signature does not match")
        return header
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureRefused("malformed signature: bad timestamp") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureRefused("malformed signature: expected t=<unix>,v1=<hex>")
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureRefused("timestamp outside the tolerance (replayed or clock skew)")
    expected = _hmac(secret, str(timestamp).encode() + b"." + body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in candidates):
        raise SignatureRefused("signature does not match")
    return header

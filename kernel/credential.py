"""A tenant-hosted worker's credential: one opaque string carrying everything it needs.

``bwc_<base64url(JSON)>``, the JSON holding the Redis user and password of this credential,
the tenant and the queue it serves, and where Redis is (optional: ``BATON_REDIS_URL`` on
the worker wins). The API stores only the SHA-256 of the password - the form Redis ACL
accepts for a password (``#<hex>``), so Redis itself never sees the plain secret either.

``transit_keys`` (key id -> base64url key) is where the per-(tenant, queue) key that opens
secrets sealed into dispatch messages travels: the API fills it in when it issues the
credential (from ``transit_key_for(tenant, queue)``), and ``baton worker --credential``
hands it to the worker's configuration. Credentials issued without it parse the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from kernel.secrets import TransitKeys

PREFIX = "bwc_"
VERSION = 1
MAX_LENGTH = 4096


class CredentialError(ValueError):
    """The string is not a worker credential Baton issued (the message says why)."""


@dataclass(frozen=True)
class WorkerCredential:
    tenant_id: str
    queue: str
    redis_user: str
    redis_password: str
    redis_url: str | None = None
    transit_keys: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        payload: dict[str, Any] = {
            "v": VERSION,
            "tenant": self.tenant_id,
            "queue": self.queue,
            "user": self.redis_user,
            "password": self.redis_password,
        }
        if self.redis_url:
            payload["redis"] = self.redis_url
        if self.transit_keys:
            payload["transit_keys"] = self.transit_keys
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def queue_transit_keys(self) -> TransitKeys:
        """The keys that open this queue's secrets in transit (its own, never the pool's)."""
        keys: dict[str, bytes] = {}
        for key_id, encoded in self.transit_keys.items():
            try:
                key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError) as error:
                raise CredentialError("the worker credential is damaged (copy it again)") from error
            if len(key) != 32:
                raise CredentialError("the worker credential is damaged (copy it again)")
            keys[key_id] = key
        return TransitKeys(keys, per_queue=True)

    @classmethod
    def parse(cls, text: str) -> WorkerCredential:
        text = text.strip()
        if not text.startswith(PREFIX) or len(text) > MAX_LENGTH:
            raise CredentialError("not a Baton worker credential (it starts with bwc_)")
        body = text[len(PREFIX) :]
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError) as error:
            raise CredentialError("the worker credential is damaged (copy it again)") from error
        if not isinstance(payload, dict) or payload.get("v") != VERSION:
            raise CredentialError("unknown worker credential version")
        try:
            tenant_id = str(uuid.UUID(str(payload["tenant"])))
            fields = {k: payload[k] for k in ("queue", "user", "password")}
        except (KeyError, ValueError) as error:
            raise CredentialError("the worker credential is incomplete") from error
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise CredentialError("the worker credential is incomplete")
        return cls(
            tenant_id=tenant_id,
            queue=fields["queue"],
            redis_user=fields["user"],
            redis_password=fields["password"],
            redis_url=_optional_text(payload.get("redis")),
            transit_keys=_text_map(payload.get("transit_keys")),
        )

    def connection_url(self, configured: str | None) -> str:
        """The Redis URL to connect with: ``configured`` (or the credential's own address)
        with this credential's user and password, whatever the URL carried before."""
        base = configured or self.redis_url
        if not base:
            raise CredentialError("no Redis address: set BATON_REDIS_URL")
        parts = urlsplit(base)
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        address = f"{host}:{parts.port}" if parts.port else host
        auth = f"{quote(self.redis_user, safe='')}:{quote(self.redis_password, safe='')}"
        return urlunsplit(parts._replace(netloc=f"{auth}@{address}"))

    def password_hash(self) -> str:
        return secret_hash(self.redis_password)


def secret_hash(password: str) -> str:
    """SHA-256 hex of a Redis password: what the API stores and what ``ACL SETUSER #``
    takes."""
    return hashlib.sha256(password.encode()).hexdigest()


def _text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str) and v}


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

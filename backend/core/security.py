"""Passwords, JWT access tokens and opaque secrets.

- Passwords: argon2id through pwdlib.
- Access tokens: HS256 JWTs signed with the active key and a ``kid`` header; the verifier
  pins the algorithm list to exactly ``["HS256"]`` (so ``alg: none`` and RS/ES confusion
  are refused), looks the key up by ``kid`` and requires every claim Baton relies on.
- Opaque secrets (refresh and API tokens) carry 256 bits of randomness, so a plain
  SHA-256 of them is a safe lookup key; the raw value is never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from backend.core.errors import InvalidToken, ValidationFailed
from backend.core.settings import Settings

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "role", "exp", "iat", "jti"]


def password_hasher(settings: Settings) -> PasswordHash:
    hasher = Argon2Hasher(
        time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_cost
    )
    return PasswordHash((hasher,))


def check_password_policy(settings: Settings, password: str) -> None:
    if len(password) < settings.min_password_length:
        raise ValidationFailed(
            f"Password must be at least {settings.min_password_length} characters",
            details=[{"loc": ["body", "password"], "msg": "too short"}],
        )


async def hash_password(settings: Settings, password: str) -> str:
    # argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(password_hasher(settings).hash, password)


async def verify_password(settings: Settings, password: str, password_hash: str | None) -> bool:
    hasher = password_hasher(settings)
    if password_hash is None:
        # Same work for unknown accounts, so response time does not reveal which exist.
        await asyncio.to_thread(hasher.hash, password)
        return False
    return await asyncio.to_thread(hasher.verify, password, password_hash)


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    jti: str
    expires_at: datetime


def issue_access_token(
    settings: Settings, *, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str
) -> tuple[str, AccessClaims]:
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=settings.access_token_ttl_seconds)
    jti = uuid.uuid4().hex
    payload: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "tid": str(tenant_id),
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": jti,
    }
    token = jwt.encode(
        payload, settings.jwt_secret, algorithm=JWT_ALGORITHM, headers={"kid": settings.jwt_kid}
    )
    return token, AccessClaims(user_id, tenant_id, role, jti, expires_at)


def verify_access_token(settings: Settings, token: str) -> AccessClaims:
    """Decode and check a JWT; any defect raises :class:`InvalidToken`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken("Malformed access token") from error
    kid = header.get("kid")
    key = settings.verification_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("Unknown signing key")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            tenant_id=uuid.UUID(payload["tid"]),
            role=str(payload["role"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("Access token expired") from error
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError, OverflowError) as error:
        # AttributeError: a non-string sub or tid; OverflowError: an exp beyond any date.
        raise InvalidToken("Invalid access token") from error


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


REFRESH_TOKEN_PREFIX = "brt"
API_TOKEN_PREFIX = "bat"


def make_tenant_token(prefix: str, tenant_id: uuid.UUID) -> str:
    """An opaque token that names its tenant: ``<prefix>_<tenant hex>_<secret>``.

    The tenant part is not secret; it lets the lookup run inside that tenant's row-level
    security scope. A forged tenant part only finds no matching hash.
    """
    return f"{prefix}_{tenant_id.hex}_{new_secret()}"


def parse_tenant_token(prefix: str, raw: str) -> tuple[uuid.UUID, str]:
    """Return (tenant id, secret hash) of a token made by :func:`make_tenant_token`."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or len(parts[2]) < 32:
        raise InvalidToken("Malformed token")
    try:
        tenant_id = uuid.UUID(hex=parts[1])
    except ValueError as error:
        raise InvalidToken("Malformed token") from error
    return tenant_id, hash_secret(raw)

"""Cursors for keyset paging.

- :func:`encode_position` / :func:`decode_position`: ``<created_at UTC ISO 8601>_<id hex>``
  for lists ordered newest first by (created_at, id) - URL-safe, unique even on ties.
- :func:`encode_cursor` / :func:`decode_cursor`: URL-safe base64 of a small JSON list, for
  other orders (log lines).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from backend.core.errors import ValidationFailed


def encode_position(created_at: datetime, item_id: uuid.UUID) -> str:
    """The cursor of an item in a (created_at, id) ordered list."""
    return f"{created_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}_{item_id.hex}"


def decode_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The ``(created_at, id)`` a cursor made by :func:`encode_position` points after."""
    try:
        created_at, item_id = cursor.split("_")
        position = (datetime.fromisoformat(created_at), uuid.UUID(hex=item_id))
    except ValueError as error:
        raise _bad_cursor() from error
    if position[0].tzinfo is None:
        raise _bad_cursor()
    return position


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """Decode a cursor made by :func:`encode_cursor`; anything else is a 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise _bad_cursor() from error
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise _bad_cursor()
    return values


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "Invalid cursor; pass back a next_cursor unchanged",
        details=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
    )

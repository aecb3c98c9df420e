"""Base classes for request and response bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    model_validator,
)

from backend.core.input_policy import value_problems

T = TypeVar("T")

_ISO_INSTANT = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?"
)


def _iso_text(value: Any) -> Any:
    """The schema says ``date-time``: pydantic alone would also take ``0.5`` or ``"0.5"`` as
    seconds since 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_INSTANT.fullmatch(value):
        raise ValueError("expected a date-time such as 2026-01-01T00:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """The same instant in UTC: PostgreSQL takes offsets up to 15:59 only, Python up to
    23:59, and an instant near year 1 or 9999 may have no UTC form at all. A time without
    offset is left as it is, for its endpoint to read (or refuse)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the instant is out of range") from error


# An instant in a query or body, as ISO 8601 / RFC 3339 text only, given to the code in UTC;
# ``Instant`` also takes a time without offset, ``AwareInstant`` needs the offset.
Instant = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]
AwareInstant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]


class RequestModel(BaseModel):
    """Request bodies refuse unknown fields: a typo is a 422, not a silently ignored key.

    They hold only what the input policy allows (``backend.core.input_policy``: no NUL or
    lone surrogate in any string or key, finite numbers, bounded nesting), however they are
    built - from a JSON body, a dashboard form or the CLI.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _input_policy(cls, data: Any) -> Any:
        for found in value_problems(data):
            where = ".".join(str(part) for part in found["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{found['msg']}")
        return data


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    """A page of items, newest first; pass ``next_cursor`` back as ``cursor`` for more."""

    items: list[T]
    next_cursor: str | None = None

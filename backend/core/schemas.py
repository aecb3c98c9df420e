"""Base classes for request and response bodies."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class RequestModel(BaseModel):
    """Request bodies refuse unknown fields: a typo is a 422, not a silently ignored key."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    """A page of items, newest first; pass ``next_cursor`` back as ``cursor`` for more."""

    items: list[T]
    next_cursor: str | None = None

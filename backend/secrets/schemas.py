"""Request and response bodies of the secrets endpoints. No response carries a value."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, field_validator, model_validator

from backend.core.schemas import RequestModel, ResponseModel
from kernel.secrets import SECRET_NAME_PATTERN

MAX_VALUE_CHARS = 32_768  # an environment variable's limit in a job spec
MAX_DESCRIPTION = 500

VALUE_HELP = "Write-only: stored encrypted, never returned by any endpoint"


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL and a task's environment can hold: valid UTF-8 (no lone surrogate),
    no NUL. The message never quotes the text (it may be a secret)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


class SecretCreate(RequestModel):
    # A value is kept exactly as sent (a trailing newline of a key file matters).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str = Field(pattern=SECRET_NAME_PATTERN, description="e.g. DB_PASSWORD")
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS, description=VALUE_HELP)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)

    _storable_text = field_validator("value", "description")(_storable)


class SecretUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    value: str | None = Field(
        default=None, min_length=1, max_length=MAX_VALUE_CHARS, description=VALUE_HELP
    )
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    _storable_text = field_validator("value", "description")(_storable)

    @model_validator(mode="after")
    def _something_to_change(self) -> SecretUpdate:
        if self.value is None and self.description is None:
            raise ValueError("give a new value, a new description, or both")
        return self


class SecretPublic(ResponseModel):
    id: uuid.UUID
    name: str
    description: str
    key_id: str = Field(description="Id of the key-encryption key its data key is wrapped by")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_at: datetime

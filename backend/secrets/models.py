"""A tenant's secret: its name and metadata in clear, its value only as ciphertext."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class Secret(SQLModel, table=True):
    __tablename__ = "secrets"

    tenant_id: uuid.UUID = tenant_pk()
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=500)
    # AES-256-GCM of the value under a random data key; the data key wrapped (AES-256-GCM)
    # by the key-encryption key ``key_id``. Tenant and name are bound as associated data.
    value_ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    value_nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    wrapped_key_nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=64)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = timestamp()
    updated_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = timestamp()

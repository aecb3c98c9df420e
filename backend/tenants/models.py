"""Tenants (organisations) and the memberships that give users a role in them.

``tenants`` is a platform table (no tenant owns a tenant row); ``memberships`` is
tenant-owned and protected by row-level security.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from backend.core.models import tenant_pk, timestamp, uuid_pk


class TenantStatus(StrEnum):
    active = "active"
    suspended = "suspended"


class Plan(StrEnum):
    """The plans of the catalogue a new installation starts with (``backend/plans``); a
    tenant's ``plan`` names a row of ``plans``, which platform administrators may extend."""

    free = "free"
    team = "team"
    business = "business"
    enterprise = "enterprise"


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = uuid_pk()
    slug: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=200)
    plan: str = Field(default=Plan.free, max_length=20)  # a row of ``plans`` (FK in SQL)
    status: str = Field(default=TenantStatus.active, max_length=20)
    max_concurrent_tasks: int | None = None  # None: the plan's default (settings)
    weight: int | None = None  # share of worker capacity under contention; None: plan default
    created_at: datetime = timestamp()


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"

    tenant_id: uuid.UUID = tenant_pk()
    user_id: uuid.UUID = Field(primary_key=True, foreign_key="users.id")
    role: str = Field(max_length=20)
    created_at: datetime = timestamp()

"""Platform administration (superusers only): the seed of the admin console."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import service as auth_service
from backend.auth.models import User
from backend.auth.repository import UserRepository
from backend.core.errors import ValidationFailed
from backend.core.principal import RequestOrigin
from backend.core.settings import Settings
from backend.tenants.models import Tenant
from backend.tenants.repository import TenantDirectory


def encode_cursor(tenant: Tenant) -> str:
    """``<created_at, UTC, ISO 8601>_<id hex>``: URL-safe, and unique even on ties."""
    created_at = tenant.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{created_at}_{tenant.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The ``(created_at, id)`` a cursor made by :func:`encode_cursor` points after."""
    invalid = ValidationFailed(
        "Invalid cursor; pass back a next_cursor unchanged",
        details=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
    )
    try:
        created_at, tenant_id = cursor.split("_")
        position = (datetime.fromisoformat(created_at), uuid.UUID(hex=tenant_id))
    except ValueError as error:
        raise invalid from error
    if position[0].tzinfo is None:
        raise invalid
    return position


async def list_tenants(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Tenant], str | None]:
    """A page of every tenant, newest first, and the cursor of the next page."""
    after = decode_cursor(cursor) if cursor is not None else None
    tenants = await TenantDirectory(session).page(limit=limit + 1, after=after)
    next_cursor = encode_cursor(tenants[limit - 1]) if len(tenants) > limit else None
    return tenants[:limit], next_cursor


async def ensure_superuser(
    session: AsyncSession, settings: Settings, *, email: str, password: str
) -> User:
    """Create (with an own tenant to log in to) or promote a platform administrator."""
    user = await UserRepository(session).get_by_email(email)
    if user is None:
        result = await auth_service.signup(
            session,
            settings,
            email=email,
            password=password,
            tenant_name="Platform",
            origin=RequestOrigin(),
        )
        user = result.user
    user.is_superuser = True
    session.add(user)
    await session.flush()
    return user


async def ensure_demo_tenant(session: AsyncSession, settings: Settings) -> bool:
    """Seed the demo tenant and its owner for ``baton dev``; False if they exist already."""
    if await UserRepository(session).get_by_email(settings.demo_email) is not None:
        return False
    result = await auth_service.signup(
        session,
        settings,
        email=settings.demo_email,
        password=settings.demo_password,
        tenant_name="Demo",
        origin=RequestOrigin(),
    )
    result.user.is_superuser = True  # the dev instance's operator sees the admin console too
    session.add(result.user)
    await session.flush()
    return True

"""Platform administration (superusers only): the seed of the admin console."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import service as auth_service
from backend.auth.models import User
from backend.auth.repository import UserRepository
from backend.core.cursor import decode_position, encode_position
from backend.core.principal import RequestOrigin
from backend.core.settings import Settings
from backend.tenants.models import Tenant
from backend.tenants.repository import TenantDirectory


async def list_tenants(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Tenant], str | None]:
    """A page of every tenant, newest first, and the cursor of the next page."""
    after = decode_position(cursor) if cursor is not None else None
    tenants = await TenantDirectory(session).page(limit=limit + 1, after=after)
    last = tenants[limit - 1] if len(tenants) > limit else None
    next_cursor = encode_position(last.created_at, last.id) if last else None
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

"""Alembic environment (async). Migrations run as the owner role from BATON_DATABASE_URL
or from the URL the caller put in ``config.attributes["database_url"]``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers every table on the metadata)
from backend.core.settings import Settings

target_metadata = SQLModel.metadata


def _database_url() -> str:
    url = context.config.attributes.get("database_url")
    return url if isinstance(url, str) else Settings().owner_database_url()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())

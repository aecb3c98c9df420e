"""PostgreSQL engine and the request session.

The session dependency owns the transaction: it commits when the endpoint returns and
rolls back when it raises (services only flush). Work that must reach Redis is buffered
with :func:`after_commit` and sent only once the commit that made it has succeeded.

Tenant scope: :func:`scope_to_tenant` sets ``app.tenant_id`` with ``set_config(..., true)``,
i.e. for the current transaction only - safe with connection pools and PgBouncer in
transaction mode. Row-level security policies read it; with nothing set they match no row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.errors import BatonError

AfterCommit = Callable[[], Awaitable[None]]
_AFTER_COMMIT_KEY = "baton.after_commit"


def create_engine(
    url: str, *, pool_size: int = 10, custom_plans: bool = False, pre_ping: bool = True
) -> AsyncEngine:
    """The async engine. ``custom_plans``: plan every execution of a prepared statement
    for its actual parameters. The engine's admission query needs it - after five runs
    PostgreSQL may switch to a generic plan that reads a whole backlog to pick 64 rows.

    ``pre_ping``: test each connection as it leaves the pool. With asyncpg that costs three
    round trips (BEGIN, an empty statement, ROLLBACK) per transaction, which the engine's
    hot path cannot afford; its loops retry an iteration that fails, and a connection that
    failed is thrown away (SQLAlchemy recycles the pool on a disconnect), so without the
    ping a dead connection costs one retried iteration instead of three round trips each
    time."""
    connect_args: dict[str, Any] = {}
    if custom_plans:
        connect_args["server_settings"] = {"plan_cache_mode": "force_custom_plan"}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def scope_to_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Make row-level security show this tenant's rows for the rest of the transaction."""
    await session.execute(
        text("SELECT set_config('app.tenant_id', :tenant_id, true)"),
        {"tenant_id": str(tenant_id)},
    )


async def scope_to_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Let the transaction read this user's own memberships in every tenant (login only)."""
    await session.execute(
        text("SELECT set_config('app.user_id', :user_id, true)"), {"user_id": str(user_id)}
    )


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the session's transaction has committed (never on rollback)."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


async def commit(session: AsyncSession) -> None:
    """Commit, then run the buffered after-commit callbacks in order.

    The callbacks are taken off the session first, so a commit that fails drops them too.
    """
    callbacks: list[AfterCommit] = session.info.pop(_AFTER_COMMIT_KEY, [])
    await session.commit()
    for callback in callbacks:
        await callback()


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_commit(session: Session, previous_transaction: SessionTransaction) -> None:
    """A rollback of the outermost transaction undoes what the callbacks were waiting for,
    so a session used again afterwards must not run them on its next commit."""
    if previous_transaction.parent is None:
        session.info.pop(_AFTER_COMMIT_KEY, None)


@asynccontextmanager
async def tenant_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """One transaction scoped to a tenant, outside a request (engine, scheduler): commit
    (then after-commit callbacks) on success, roll back on any error."""
    async with sessionmaker() as session:
        await scope_to_tenant(session, tenant_id)
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await commit(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit on success, roll back on error.

    A ``BatonError`` with ``commit_side_effects`` (a failed login's audit row, a reused
    refresh token's revoked family) is committed before it is answered.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BatonError as error:
            if error.commit_side_effects:
                await commit(session)
            else:
                await session.rollback()
            raise
        except Exception:
            await session.rollback()
            raise
        else:
            await commit(session)


# scope="function": the session exits (commits) when the endpoint returns, before the
# response is sent. FastAPI's default ("request") would commit only after the client
# already has its answer - a 201 for a write that may still fail, or not be visible yet.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

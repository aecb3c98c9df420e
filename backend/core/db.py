"""PostgreSQL engine and the request session.

The session dependency owns the transaction: it commits when the endpoint returns and
rolls back when it raises (services only flush). Work that must reach Redis is buffered
with :func:`after_commit` and sent only once the commit that made it has succeeded.

Tenant scope: :func:`scope_to_tenant` sets ``app.tenant_id`` with ``set_config(..., true)``,
i.e. for the current transaction only - safe with connection pools and PgBouncer in
transaction mode. Row-level security policies read it; with nothing set they match no row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, get_args

import asyncpg
import structlog
from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.errors import BatonError
from kernel.dependencies import outage_of

log = structlog.get_logger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
_AFTER_COMMIT_KEY = "baton.after_commit"


class _Connection(asyncpg.Connection):
    """An asyncpg connection that can send statements with a transaction's ``BEGIN``, in the
    same round trip (simple query protocol). :func:`scope_to_tenant` uses it to set the
    tenant as the transaction begins; nothing else sets ``_with_begin``, and it is cleared
    as soon as the ``BEGIN`` it was meant for has been sent (or has failed)."""

    _with_begin: str | None = None

    async def execute(
        self,
        query: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's own signature
    ) -> str:
        suffix = self._with_begin
        if suffix is not None and not args and query.startswith("BEGIN"):
            self._with_begin = None
            query = f"{query} {suffix}"
        return await super().execute(query, *args, timeout=timeout)


_IDLE_SINCE = "baton.idle_since"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    custom_plans: bool = False,
    pre_ping: bool = True,
    ping_idle_after: float | None = None,
) -> AsyncEngine:
    """The async engine. ``custom_plans``: plan every execution of a prepared statement
    for its actual parameters. The engine's admission query needs it - after five runs
    PostgreSQL may switch to a generic plan that reads a whole backlog to pick 64 rows.
    Planning costs too (a chain step's statements spent more time being planned than
    run): a transaction that sends only statements whose plan cannot depend on their
    parameters asks for ``plan_cache="auto"`` (:func:`tenant_transaction`), and the claim
    asks for custom plans again for itself (``backend/engine/admission.py``).

    ``pre_ping``: test each connection as it leaves the pool. With asyncpg that costs three
    round trips (BEGIN, an empty statement, ROLLBACK) per transaction, which the engine's
    hot path cannot afford; its loops retry an iteration that fails, and a connection that
    failed is thrown away (SQLAlchemy recycles the pool on a disconnect), so without the
    ping a dead connection costs one retried iteration instead of three round trips each
    time.

    ``ping_idle_after`` (with ``pre_ping=False``): test only a connection that sat in the
    pool longer than this many seconds, and replace it when the test fails. A server that
    restarted while the pool was idle is noticed before a request uses the connection,
    while a busy pool (connections back in use within milliseconds) pays nothing; a
    connection that dies while in use fails its request with a 503 and the pool is
    recycled."""
    connect_args: dict[str, Any] = {"connection_class": _Connection}
    if custom_plans:
        connect_args["server_settings"] = {"plan_cache_mode": "force_custom_plan"}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
    )
    _discard_stray_transactions(engine)  # first: no idle ping for a connection thrown away
    if ping_idle_after is not None and not pre_ping:
        _ping_when_idle(engine, ping_idle_after)
    _recycle_on_outage(engine)
    return engine


def _discard_stray_transactions(engine: AsyncEngine) -> None:
    """Never hand out a connection that is inside a transaction nobody tracks.

    asyncpg keeps a transaction of its own (``_top_xact``) beside SQLAlchemy's: when it
    still counts one as open while SQLAlchemy's adapter has none - its ``Transaction.start``
    keeps ``_top_xact`` when the ``BEGIN`` it sent fails or is interrupted - every later
    transaction on that connection is a ``SAVEPOINT`` inside the stray one. Its "commits"
    then commit nothing (a request answers 201 for rows no other connection ever sees) and
    the transaction-scoped advisory locks it takes (the tenant's audit chain, admission)
    are never released, so other connections wait on them forever. Seen once a suite run:
    a pooled runtime connection idle in a transaction for minutes, releasing savepoints,
    holding twenty tenants' audit-chain locks. Such a connection is thrown away as it
    leaves the pool (closing it ends the stray transaction on the server, which releases
    its locks) and the pool hands out another: a check of two attributes, no round trip."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if not isinstance(driver, asyncpg.Connection):
            return
        if getattr(dbapi_connection, "_transaction", None) is not None:
            return  # SQLAlchemy's own transaction (never the case for a pooled connection)
        if driver.is_in_transaction() or getattr(driver, "_top_xact", None) is not None:
            log.warning("db.stray_transaction_discarded")
            raise DisconnectionError("a pooled connection was inside an untracked transaction")


def _recycle_on_outage(engine: AsyncEngine) -> None:
    """Treat every error that says PostgreSQL is unreachable as a disconnect, so that
    SQLAlchemy throws the connection away and recycles the pool. Without a pre-ping that
    is what replaces connections killed while they sat in the pool; asyncpg's "connection
    is closed" at the ``BEGIN`` our connection class sends was not recognised, so dead
    connections went back to the pool and failed iteration after iteration."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _outage_is_a_disconnect(context: Any) -> None:
        if not context.is_disconnect and outage_of(context.original_exception) == "postgres":
            context.is_disconnect = True


def _ping_when_idle(engine: AsyncEngine, seconds: float) -> None:
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since <= seconds:
            return
        try:
            dbapi_connection.ping()  # runs inside SQLAlchemy's greenlet: may await
        except dbapi_error as error:
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError("idle connection failed its ping") from error


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


# Planning every execution of a prepared statement for its parameters
# (``plan_cache_mode``, see ``create_engine``) or reusing a plan once PostgreSQL judges it
# as good ("auto", PostgreSQL's default). Fixed values: they are written into statements.
PlanCacheMode = Literal["auto", "force_custom_plan"]


async def scope_to_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, *, plan_cache: PlanCacheMode | None = None
) -> None:
    """Make row-level security show this tenant's rows for the rest of the transaction.

    When the transaction has not begun yet (the usual case: the first thing a request or a
    tenant transaction does), ``set_config`` travels with its ``BEGIN``: one round trip.
    ``plan_cache``: the transaction's ``plan_cache_mode`` as well, in the same statement."""
    setting = f"set_config('app.tenant_id', '{uuid.UUID(str(tenant_id))}', true)"
    if plan_cache is not None:
        if plan_cache not in get_args(PlanCacheMode):
            raise ValueError(f"not a plan_cache_mode Baton sets: {plan_cache!r}")
        setting += f", set_config('plan_cache_mode', '{plan_cache}', true)"
    if not await _begin_with(session, f"SELECT {setting};"):
        await session.execute(text(f"SELECT {setting}"))


async def scope_to_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Let the transaction read this user's own memberships in every tenant (login only)."""
    statement = f"SELECT set_config('app.user_id', '{uuid.UUID(str(user_id))}', true);"
    if not await _begin_with(session, statement):
        await session.execute(
            text("SELECT set_config('app.user_id', :user_id, true)"), {"user_id": str(user_id)}
        )


async def _begin_with(session: AsyncSession, statement: str) -> bool:
    """Begin the session's database transaction with ``statement`` (``set_config`` calls) in
    the same round trip; False (nothing done) when it has begun already or cannot be begun so.

    SQLAlchemy's asyncpg adapter begins a transaction lazily, as its first statement is
    sent; here it is begun the adapter's own way (``_start_transaction``), with the
    statement appended to the ``BEGIN`` by :class:`_Connection`. Its values are UUIDs
    rendered by ``uuid`` itself (hex digits and dashes) and fixed words, never user input,
    so they are safe in the statement text."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted, driver = raw.dbapi_connection, raw.driver_connection
    if (
        not isinstance(driver, _Connection)
        or getattr(adapted, "_transaction", True) is not None
        or getattr(adapted, "isolation_level", "autocommit") == "autocommit"
    ):
        return False
    driver._with_begin = statement
    try:
        await adapted._start_transaction()  # type: ignore[union-attr]
        # Sent only if what began the transaction was a BEGIN (asyncpg opens a SAVEPOINT
        # instead when it still counts a transaction of its own as open): else the caller
        # sets it with a statement of its own, in the transaction now begun.
        sent = driver._with_begin is None
    finally:
        driver._with_begin = None
    return sent


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session's transaction, begun on the server, for
    statements sent without SQLAlchemy (the engine's hot path: ``backend/engine/reads.py``,
    ``writes.py``). They run in the session's transaction, so its commit or rollback
    covers them; what they change is not in the session (no ORM object sees it)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted, driver = raw.dbapi_connection, raw.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        raise TypeError(f"not an asyncpg connection: {type(driver).__name__}")
    if getattr(adapted, "_transaction", True) is None and not driver.is_in_transaction():
        # SQLAlchemy's adapter sends BEGIN with the first statement it executes itself;
        # a statement sent around it first would run (and release its locks) on its own.
        await adapted._start_transaction()  # type: ignore[union-attr]
    return driver


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
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: uuid.UUID,
    *,
    plan_cache: PlanCacheMode | None = None,
) -> AsyncIterator[AsyncSession]:
    """One transaction scoped to a tenant, outside a request (engine, scheduler): commit
    (then after-commit callbacks) on success, roll back on any error. ``plan_cache``: the
    transaction's ``plan_cache_mode`` (see :func:`scope_to_tenant`)."""
    async with sessionmaker() as session:
        await scope_to_tenant(session, tenant_id, plan_cache=plan_cache)
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

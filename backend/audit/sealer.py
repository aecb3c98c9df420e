"""The audit sealer: chains pending audit events off the request path.

A trigger appends its audit event to ``audit_pending`` in its own transaction and, after
the commit, *kicks* this process's sealer for the tenant (:func:`backend.audit.service.
seal_soon`). The sealer runs at most one sealing transaction per tenant at a time; kicks
that arrive meanwhile make it go round once more, so under load one transaction seals
the events of many triggers (the chain lock is taken once per batch, by the sealer only).

Nothing is lost if a process dies between a commit and its seal: the pending rows are
committed, and the next kick for the tenant, a reader of the log (which seals first) or
the periodic :meth:`Sealer.sweep` chains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit.service import seal_pending
from backend.core.db import create_sessionmaker, tenant_transaction

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 30.0
# A kick waits this long before sealing, so that a burst is sealed together after it (one
# chain-lock transaction per tenant) instead of competing with it: a busy tenant's triggers,
# or a scheduler's top-of-the-minute hand-over of thousands of fires, each with its
# `schedule.fired` event (at 50 ms, the seals ran between the hand-over's batches and made
# it about twice as slow). Nothing reads an unsealed chain: a reader of the log seals first.
SEAL_DELAY_SECONDS = 1.0


class Sealer:
    """One per database engine (process): coalesces kicks into per-tenant seals."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._sealing: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._again: set[uuid.UUID] = set()
        self._closed = False

    def kick(self, tenant_id: uuid.UUID) -> None:
        """Seal the tenant's committed pending events soon (never waits)."""
        if self._closed:
            return
        if tenant_id in self._sealing:
            self._again.add(tenant_id)  # committed after the running seal read: go again
            return
        self._sealing[tenant_id] = asyncio.create_task(self._seal_while_kicked(tenant_id))

    async def _seal_while_kicked(self, tenant_id: uuid.UUID) -> None:
        try:
            while True:
                await asyncio.sleep(SEAL_DELAY_SECONDS)
                self._again.discard(tenant_id)
                await self.seal(tenant_id)
                if tenant_id not in self._again or self._closed:
                    return
        except (SQLAlchemyError, OSError) as error:
            # The rows stay pending (committed): a later kick or the sweep seals them.
            log.warning("audit.seal_failed", tenant_id=str(tenant_id), error=repr(error))
        finally:
            self._sealing.pop(tenant_id, None)

    async def seal(self, tenant_id: uuid.UUID) -> int:
        """Seal the tenant's pending events now, in a transaction of their own."""
        async with tenant_transaction(self.sessionmaker, tenant_id) as session:
            return await seal_pending(session, tenant_id)

    async def sweep(self) -> int:
        """Seal every tenant's pending events (those a crashed process left behind)."""
        async with self.sessionmaker() as session:
            # One statement; each check scopes the transaction to its tenant (rolled back).
            result = await session.execute(
                text("SELECT id FROM tenants WHERE audit_has_pending(id) ORDER BY id")
            )
            tenants = [row[0] for row in result]
            await session.rollback()
        sealed = 0
        for tenant_id in tenants:
            try:
                sealed += await self.seal(tenant_id)
            except SQLAlchemyError as error:
                # A chain that cannot take its pending rows (a row forged in their way is
                # tampering, which `baton audit verify` reports) must not keep every other
                # tenant's events unsealed.
                log.error("audit.seal_failed", tenant_id=str(tenant_id), error=repr(error))
        return sealed

    async def sweep_forever(self, interval: float = SWEEP_SECONDS) -> None:
        while not self._closed:
            try:
                sealed = await self.sweep()
                if sealed:
                    log.info("audit.sweep_sealed", events=sealed)
            except (SQLAlchemyError, OSError) as error:
                log.warning("audit.sweep_failed", error=repr(error))
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Let running seals finish (they are short); take no more kicks."""
        self._closed = True
        running = list(self._sealing.values())
        if running:
            await asyncio.wait(running, timeout=10)
        for task in running:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


_SEALERS: dict[AsyncEngine, Sealer] = {}


def sealer_for(engine: AsyncEngine) -> Sealer:
    """The sealer of this engine's database in this process (created on first use)."""
    sealer = _SEALERS.get(engine)
    if sealer is None or sealer._closed:
        sealer = _SEALERS[engine] = Sealer(create_sessionmaker(engine))
    return sealer


async def close_sealer(engine: AsyncEngine) -> None:
    """Finish the engine's running seals (before the engine is disposed)."""
    sealer = _SEALERS.pop(engine, None)
    if sealer is not None:
        await sealer.close()

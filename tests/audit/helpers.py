"""Read and check a tenant's audit rows as the owner role (no row-level security)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit.service import ChainReport, verify_chain
from backend.core.db import scope_to_tenant

TEST_CLIENT_IP = "203.0.113.7"
USER_AGENT = "baton-tests/1.0 (audit)"


async def audit_rows(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every audit row of the tenant, oldest first."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM audit_events WHERE tenant_id = :t ORDER BY seq"),
            {"t": tenant_id},
        )
        return [dict(row._mapping) for row in result]


async def audit_count(engine: AsyncEngine, tenant_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT count(*) FROM audit_events WHERE tenant_id = :t"), {"t": tenant_id}
        )
        return int(result.scalar_one())


async def rows_after(engine: AsyncEngine, tenant_id: uuid.UUID, seq: int) -> list[dict[str, Any]]:
    return [row for row in await audit_rows(engine, tenant_id) if row["seq"] > seq]


async def head_seq(engine: AsyncEngine, tenant_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = :t"),
            {"t": tenant_id},
        )
        return int(result.scalar_one())


async def verify(app: FastAPI, tenant_id: uuid.UUID) -> ChainReport:
    """``verify_chain`` as the runtime role, in a transaction scoped to the tenant."""
    async with app.state.sessionmaker() as session:
        await scope_to_tenant(session, tenant_id)
        report = await verify_chain(session, tenant_id)
        await session.rollback()
        return report


async def tamper(engine: AsyncEngine, statement: str, **params: Any) -> int:
    """Run a statement as the owner (bypassing grants and row-level security)."""
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return int(result.rowcount)

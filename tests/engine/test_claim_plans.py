"""The claim is planned for its parameters even in a transaction that reuses plans.

The finishing step's transaction asks for reused plans (its statements look rows up by
key); a generic plan of the claim would read the tenant's whole backlog, so admission's
lock statement asks for custom plans again before the claim (backend/engine/admission.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import tenant_transaction
from backend.core.settings import Settings
from backend.engine.admission import admit
from kernel.dag.plan import PLANS
from tests.fixtures.factories import Account


async def _plan_cache_mode(session: AsyncSession) -> str:
    result = await session.execute(text("SELECT current_setting('plan_cache_mode')"))
    return str(result.scalar_one())


async def test_admission_plans_its_claim_for_its_parameters_in_a_reusing_transaction(
    app: FastAPI, owner: Account, settings: Settings
) -> None:
    sessionmaker = app.state.sessionmaker
    for try_lock in (True, False):
        async with tenant_transaction(sessionmaker, owner.tenant_id, plan_cache="auto") as session:
            assert await _plan_cache_mode(session) == "auto"
            admission = await admit(
                session,
                owner.tenant_id,
                PLANS,
                max_concurrent=10,
                limit=1,
                settings=settings,
                try_lock=try_lock,
            )
            assert admission is not None and admission.messages == []
            assert await _plan_cache_mode(session) == "force_custom_plan"

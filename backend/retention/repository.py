"""The retention's deletions: bounded batches, one tenant at a time, each statement scoped
to the tenant (and the transaction to it: row-level security)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import TextClause, text
from sqlmodel.ext.asyncio.session import AsyncSession

# Final runs created (and finished) before the cutoff, oldest first - except the newest run
# of its job (the jobs page shows it, a schedule's concurrency policy reads it) and runs
# still queued or running. Rows another transaction holds are skipped (the engine may be
# writing a late event of an old run: it comes back next pass). Task runs, attempts and
# log lines go with their run (ON DELETE CASCADE).
_OLD_RUNS = text(
    """
    WITH doomed AS (
        SELECT r.id FROM runs r
         WHERE r.tenant_id = :tenant AND r.created_at < :cutoff
           AND r.status IN ('succeeded', 'failed', 'cancelled')
           AND coalesce(r.finished_at, r.created_at) < :cutoff
           AND r.id <> (SELECT newest.id FROM runs newest
                         WHERE newest.tenant_id = r.tenant_id AND newest.job_id = r.job_id
                         ORDER BY newest.created_at DESC, newest.id DESC LIMIT 1)
         ORDER BY r.created_at
         LIMIT :batch
         FOR UPDATE SKIP LOCKED
    )
    DELETE FROM runs WHERE tenant_id = :tenant AND id IN (SELECT id FROM doomed)
    """
)
# Both tables are partitioned (migration 0014): a row's ctid is only unique within its
# partition, so a row is named by (tableoid, ctid).
_OLD_LOG_LINES = text(
    "DELETE FROM task_logs WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM task_logs"
    " WHERE tenant_id = :tenant AND logged_at < :cutoff LIMIT :batch)"
)
_OLD_TICKS = text(
    "DELETE FROM schedule_ticks WHERE (tableoid, ctid) IN (SELECT tableoid, ctid"
    " FROM schedule_ticks WHERE tenant_id = :tenant AND scheduled_for < :cutoff LIMIT :batch)"
)


async def _delete(
    session: AsyncSession, statement: TextClause, tenant_id: uuid.UUID, cutoff: datetime, batch: int
) -> int:
    result = await session.execute(
        statement,
        {"tenant": tenant_id, "cutoff": cutoff, "batch": batch},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_old_runs(
    session: AsyncSession, tenant_id: uuid.UUID, cutoff: datetime, batch: int
) -> int:
    """Up to ``batch`` of the tenant's settled runs older than ``cutoff`` (see above)."""
    return await _delete(session, _OLD_RUNS, tenant_id, cutoff, batch)


async def delete_old_log_lines(
    session: AsyncSession, tenant_id: uuid.UUID, cutoff: datetime, batch: int
) -> int:
    """Up to ``batch`` of the tenant's log lines logged before ``cutoff``."""
    return await _delete(session, _OLD_LOG_LINES, tenant_id, cutoff, batch)


async def delete_old_ticks(
    session: AsyncSession, tenant_id: uuid.UUID, cutoff: datetime, batch: int
) -> int:
    """Up to ``batch`` of the tenant's schedule ticks due before ``cutoff``."""
    return await _delete(session, _OLD_TICKS, tenant_id, cutoff, batch)

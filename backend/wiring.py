"""Which domain reacts to which other domain's hooks (``backend/core/hooks.py``).

Imported by every process that changes domain state (the API, the CLI, ``baton dev``'s
processes, the engine), so the connections exist before the first request. Connecting is
idempotent.
"""

from __future__ import annotations

from backend.jobs.hooks import job_schedule_changed, jobs_created
from backend.runs.hooks import runs_finished, runs_refused
from backend.schedules.service import create_schedules, sync_schedule
from backend.triggers.reactor import record_finished, record_refused

job_schedule_changed.connect(sync_schedule)
jobs_created.connect(create_schedules)
runs_finished.connect(record_finished)
runs_refused.connect(record_refused)

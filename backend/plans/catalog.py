"""The names and numbers of Baton's plans, in one place.

Migration 0011 seeds the ``plans`` table from :data:`DEFAULT_PLANS`; platform
administrators edit the rows afterwards (``PUT /api/v1/admin/plans/{name}``). A limit of
``None`` is unlimited.
"""

from __future__ import annotations

from typing import Final

# Every limit a plan sets. ``max_concurrent_tasks`` and ``weight`` feed admission (the
# engine); the others are checked where they apply.
LIMITS: Final = (
    "max_concurrent_tasks",
    "weight",
    "runs_per_month",
    "task_seconds_per_month",
    "members",
    "scheduled_jobs",
    "api_requests_per_minute",
    "log_retention_days",
)

DEFAULT_PLANS: Final[dict[str, dict[str, int | None]]] = {
    "free": {
        "max_concurrent_tasks": 5,
        "weight": 1,
        "runs_per_month": 1_000,
        "task_seconds_per_month": 36_000,  # 10 hours
        "members": 3,
        "scheduled_jobs": 5,
        "api_requests_per_minute": 120,
        "log_retention_days": 7,
    },
    "team": {
        "max_concurrent_tasks": 50,
        "weight": 2,
        "runs_per_month": 50_000,
        "task_seconds_per_month": 1_800_000,  # 500 hours
        "members": 25,
        "scheduled_jobs": 100,
        "api_requests_per_minute": 1_200,
        "log_retention_days": 30,
    },
    "business": {
        "max_concurrent_tasks": 200,
        "weight": 4,
        "runs_per_month": 500_000,
        "task_seconds_per_month": 18_000_000,  # 5,000 hours
        "members": 200,
        "scheduled_jobs": 1_000,
        "api_requests_per_minute": 6_000,
        "log_retention_days": 90,
    },
    "enterprise": {
        "max_concurrent_tasks": 1_000,
        "weight": 8,
        "runs_per_month": None,
        "task_seconds_per_month": None,
        "members": None,
        "scheduled_jobs": None,
        "api_requests_per_minute": 30_000,
        "log_retention_days": 365,
    },
}

# The fraction of a limit at which a warning event is logged (``quota.warning``).
WARNING_FRACTION: Final = 0.8

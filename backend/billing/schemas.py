"""Response bodies of the usage API."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class UsageCounts(BaseModel):
    runs: int = 0
    task_seconds: int = 0
    log_bytes: int = 0
    api_requests: int = 0


class UsageDayPublic(UsageCounts):
    day: date


class LimitUsage(BaseModel):
    """One limit of the plan against what the tenant uses of it now."""

    name: str
    allowed: int | None  # None: unlimited
    used: int | None  # None: not a quantity that accumulates (weight, retention)
    resets_at: datetime | None  # None: it does not reset by itself
    warning: bool  # at 80 % or more


class UsageReport(BaseModel):
    plan: str
    period_start: datetime
    period_end: datetime
    totals: UsageCounts
    days: list[UsageDayPublic]
    limits: list[LimitUsage]

"""Every table, imported in one place so Alembic and tests see the whole schema."""

from backend.accounts.models import AccountToken
from backend.audit.models import AuditCheckpoint, AuditEvent
from backend.billing.models import BillingAccount, MeterReport, StripeEvent, UsageDay
from backend.jobs.models import Job, JobVersion
from backend.notify.models import (
    NotificationChannel,
    NotificationDelivery,
    NotificationRule,
    SlaMiss,
)
from backend.plans.models import PlanRow
from backend.runs.models import Run, TaskAttempt, TaskLog, TaskRun
from backend.schedules.models import Schedule, ScheduleTick
from backend.secrets.models import Secret
from backend.templates.models import JobTemplate
from backend.tenants.models import Membership, Tenant
from backend.tokens.models import ApiToken
from backend.triggers.models import (
    RunFinishOutbox,
    RunRefusalOutbox,
    WebhookDelivery,
    WebhookEndpoint,
)
from backend.users.models import RefreshToken, User
from backend.workers.models import WorkerCredential

__all__ = [
    "AccountToken",
    "ApiToken",
    "AuditCheckpoint",
    "AuditEvent",
    "BillingAccount",
    "Job",
    "JobTemplate",
    "JobVersion",
    "Membership",
    "MeterReport",
    "NotificationChannel",
    "NotificationDelivery",
    "NotificationRule",
    "PlanRow",
    "RefreshToken",
    "Run",
    "RunFinishOutbox",
    "RunRefusalOutbox",
    "Schedule",
    "ScheduleTick",
    "Secret",
    "SlaMiss",
    "StripeEvent",
    "TaskAttempt",
    "TaskLog",
    "TaskRun",
    "Tenant",
    "UsageDay",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerCredential",
]

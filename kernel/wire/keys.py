"""Every Redis key name Baton uses, in one place.

Tenant keys look like ``baton:{<tenant_id>}:...``: the braces are a Redis Cluster hash
tag, so one tenant's keys share a slot while tenants spread over the cluster.
"""

from __future__ import annotations

import hashlib

PREFIX = "baton"


def _digest(value: str) -> str:
    # Hash free-form input (emails, addresses) so key names stay short and carry no PII.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def login_failures_account(email: str) -> str:
    """Counter of failed logins for one account (email), expiring with its window."""
    return f"{PREFIX}:auth:fail:acct:{_digest(email.lower())}"


def login_failures_ip(ip: str) -> str:
    """Counter of failed logins from one client address."""
    return f"{PREFIX}:auth:fail:ip:{_digest(ip)}"


def api_requests(tenant_id: str, minute: int) -> str:
    """Counter of one tenant's API requests in one minute (epoch minutes), for its plan's
    requests-per-minute limit; expires soon after the minute."""
    return f"{PREFIX}:{{{tenant_id}}}:api:rpm:{minute}"


def api_requests_day(tenant_id: str, day: str) -> str:
    """Counter of one tenant's API requests on one UTC day (ISO date), flushed into
    ``usage_daily`` by the meter; expires a few days later."""
    return f"{PREFIX}:{{{tenant_id}}}:api:day:{day}"


def webhook_deliveries(tenant_id: str, minute: int) -> str:
    """Counter of one tenant's inbound webhook deliveries in one minute (epoch minutes),
    for ``webhook_deliveries_per_minute``; expires soon after the minute."""
    return f"{PREFIX}:{{{tenant_id}}}:hooks:rpm:{minute}"


def revoked_access_token(jti: str) -> str:
    """Marks a logged-out access token until it would have expired anyway."""
    return f"{PREFIX}:auth:revoked:{jti}"


def web_session_rotation(refresh_token_hash: str) -> str:
    """A dashboard session's rotated token pair, briefly, for requests racing the rotation.

    A browser sends several requests at once (a page, its htmx fragments, an event stream);
    when the access cookie has expired they all carry the same refresh token. The first
    rotates it and parks the new pair here; the others take that pair instead of presenting
    a used token, which would revoke the whole session.
    """
    return f"{PREFIX}:auth:web-rotation:{refresh_token_hash}"


# --- dispatch and events -------------------------------------------------------------
WORKERS_GROUP = "workers"
ENGINE_GROUP = "engine"


def _tenant(tenant_id: str) -> str:
    return f"{PREFIX}:{{{tenant_id}}}"


def queue_stream(tenant_id: str, queue: str) -> str:
    """A tenant's dispatch stream for one queue; consumer group ``workers``."""
    return f"{_tenant(tenant_id)}:q:{queue}"


def events_stream(tenant_id: str) -> str:
    """Results, heartbeats and log chunks from workers to the engine; group ``engine``."""
    return f"{_tenant(tenant_id)}:events"


def queue_tenants(queue: str) -> str:
    """Set of tenants that have had work dispatched on ``queue`` (what workers poll)."""
    return f"{PREFIX}:queues:{queue}:tenants"


def engine_tenants() -> str:
    """Set of tenants with work in flight (whose events streams the engine reads)."""
    return f"{PREFIX}:engine:tenants"


def engine_due() -> str:
    """Sorted set: tenant id -> the earliest instant it has work to admit (a due-time index
    for delayed runs and retry backoff)."""
    return f"{PREFIX}:engine:due"


def engine_outbox(tenant_id: str, entry_id: str) -> str:
    """Dispatch messages the engine is committing, kept until they are published (with the
    acknowledgement of the events batch that made them, if any) in one atomic step.
    ``entry_id`` names the events batch that starts at that entry, or an admission of the
    admission loop (``admit-<uuid>``). An engine that died in between leaves it; whoever
    replays the batch, or the sweep that finds it in :func:`engine_outboxes`, publishes the
    messages whose dispatch PostgreSQL holds (``backend/engine/outbox.py``)."""
    return f"{_tenant(tenant_id)}:engine:outbox:{entry_id}"


def engine_outboxes() -> str:
    """Sorted set: outbox key -> when it was written; the published ones leave it, so what
    stays past a few seconds was left by an engine that died or lost Redis mid-publish."""
    return f"{PREFIX}:engine:outboxes"


def outbox_tenant(outbox: str) -> str:
    """The tenant id an :func:`engine_outbox` key names."""
    return outbox.split("{", 1)[1].split("}", 1)[0]


OUTBOX_SECONDS = 24 * 3600  # an outbox nobody replays (its batch dead-lettered) expires


def engine_wakeup() -> str:
    """List the API pushes to so the engine admits new work at once instead of at its tick."""
    return f"{PREFIX}:engine:wakeup"


def cancel_channel() -> str:
    """Pub/sub channel on which the engine tells workers to stop a task attempt."""
    return f"{PREFIX}:cancel"


def cancelled_attempt(tenant_id: str, task_run_id: str, attempt: int | str) -> str:
    """Marks a task attempt cancelled, for a while (expires). The cancel channel reaches
    only the workers running the attempt at that moment; a worker that reads the dispatch
    message later checks this marker as it starts, so a cancelled attempt never runs."""
    return f"{_tenant(tenant_id)}:cancelled:{task_run_id}:{attempt}"


CANCELLED_MARKER_SECONDS = 24 * 3600  # longer than any dispatch message waits unread


def worker_heartbeat(worker_id: str) -> str:
    """A worker's liveness record (expires if the worker stops refreshing it)."""
    return f"{PREFIX}:workers:{worker_id}"


# --- tenant-hosted workers -------------------------------------------------------------
# A tenant-hosted worker's Redis user may touch only its own tenant's keys (hash tag
# included, so its ACL patterns are exact): it reads its queue's stream directly instead
# of the global discovery set, beats its heartbeat and hears cancels under its tenant.


def tenant_cancel_channel(tenant_id: str) -> str:
    """The cancel channel of one tenant's hosted workers (the engine publishes to both)."""
    return f"{_tenant(tenant_id)}:cancel"


def tenant_worker_heartbeat(tenant_id: str, worker_id: str) -> str:
    """A tenant-hosted worker's liveness record (expires like the shared pool's)."""
    return f"{_tenant(tenant_id)}:workers:{worker_id}"


def tenant_workers(tenant_id: str) -> str:
    """Sorted set: a tenant's hosted worker names -> their last heartbeat (epoch seconds),
    so the dashboard lists them without scanning the keyspace."""
    return f"{_tenant(tenant_id)}:workers"


def engine_epoch() -> str:
    """Set by the engine once it has reconciled Redis with PostgreSQL. Its absence means
    Redis lost its data (restarted empty): every in-flight task must be dispatched again."""
    return f"{PREFIX}:engine:epoch"


# --- cron scheduler ----------------------------------------------------------------------
def scheduler_due() -> str:
    """Sorted set: tenant id -> the earliest next_due_at of its schedules (a hint; the
    schedules table is the truth and rebuilds it)."""
    return f"{PREFIX}:sched:due"


def scheduler_replicas() -> str:
    """Sorted set: scheduler replica id -> its last heartbeat (epoch seconds)."""
    return f"{PREFIX}:sched:replicas"


def scheduler_lease(tenant_id: str) -> str:
    """Who schedules this tenant now: ``<replica> <fencing token>``, set NX PX."""
    return f"{_tenant(tenant_id)}:sched:lease"


def scheduler_fence(tenant_id: str) -> str:
    """Counter handing out this tenant's fencing tokens (one per lease acquired)."""
    return f"{_tenant(tenant_id)}:sched:fence"


def updates_stream(tenant_id: str) -> str:
    """Run and task state changes for live views (SSE); capped, so history is bounded."""
    return f"{_tenant(tenant_id)}:updates"

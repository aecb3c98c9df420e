"""Baton's one settings class.

Every knob is an environment variable with the ``BATON_`` prefix (``BATON_DATABASE_URL``,
``BATON_JWT_SECRET`` ...). A JWT key shorter than 32 bytes is always refused: PyJWT only
warns about short HMAC keys, so the refusal has to live here. Unset secrets and keys are
random per installation outside production, kept in the data directory
(``kernel.runtime.dev_secrets``): there is no development secret in the code. In production
nothing is generated, and each process calls :meth:`Settings.refuse_unsafe_for` at start,
which refuses the missing secrets *that process uses* and a Redis URL without a user and
password: the API needs the JWT secret, the database password and the key-encryption key,
the engine the database password and both secret keys, a shared-pool worker the transit
key, a tenant-hosted worker only its credential.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from kernel.runtime import dev_secrets
from kernel.runtime.env import keyring
from kernel.runtime.redis import redis_authenticated

MIN_JWT_KEY_BYTES = 32


# The ``usage_daily`` columns that can be reported to a Stripe meter.
MeteredUsage = Literal["runs", "task_seconds", "log_bytes", "api_requests"]


def _default_meters() -> dict[MeteredUsage, str]:
    return {"task_seconds": "baton_task_seconds"}


class Environment(StrEnum):
    dev = "dev"
    test = "test"
    production = "production"


class Process(StrEnum):
    """What a process is, for :meth:`Settings.refuse_unsafe_for`."""

    api = "api"
    engine = "engine"
    worker = "worker"
    database = "database"  # CLI chores: migrations, admin commands, audit verification


class UnsafeSettings(ValueError):
    """Production settings a process refuses to start with (the message says what to set)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATON_", env_file=".env", extra="ignore")

    environment: Environment = Environment.dev
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    data_dir: Path = Path(".baton-data")

    # PostgreSQL. ``database_url`` is the owner role (runs migrations, creates the
    # runtime role). The API connects as ``app_database_url`` - a role that owns no
    # table and is no superuser, so row-level security always applies to it. When
    # unset it is derived from ``database_url`` with ``app_db_role``/``app_db_password``.
    database_url: str | None = None
    app_database_url: str | None = None
    app_db_role: str = "baton_app"
    app_db_password: str = ""  # unset: generated in dev/test (dev_secrets), refused in production
    db_pool_size: int = 10

    redis_url: str | None = None
    # Redis ACL users by role (``baton redis provision-acl``, docs/security.md): the engine and
    # API connect as ``redis_engine_user``, shared-pool workers as ``redis_worker_user``; each
    # tenant-hosted worker credential gets a user of its own. ``redis_admin_url`` is the
    # connection that may create users (default: ``redis_url``); ``worker_redis_url`` is the
    # Redis address written into worker credentials (default: ``redis_url`` without its user).
    redis_engine_user: str = "baton-engine"
    redis_engine_password: str | None = None
    redis_worker_user: str = "baton-worker"
    redis_worker_password: str | None = None
    redis_admin_url: str | None = None
    worker_redis_url: str | None = None
    # A tenant-hosted worker's credential (``bwc_...``, also ``baton worker --credential``).
    worker_credential: str | None = None
    # How often the engine removes the Redis users of expired worker credentials.
    worker_credential_sweep_seconds: float = Field(default=10.0, gt=0)

    # Tokens. The active key signs; previous keys (JSON object kid -> secret) still verify,
    # so keys rotate without logging everybody out.
    # Unset: generated in dev/test (``dev_secrets``), refused in production.
    jwt_secret: str = ""
    jwt_kid: str = "k1"
    jwt_previous_keys: str = "{}"
    jwt_issuer: str = "baton"
    jwt_audience: str = "baton-api"
    access_token_ttl_seconds: int = Field(default=900, gt=0)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # Tenant secrets (docs/security.md#secrets). Each value is encrypted with a data key of
    # its own, wrapped by this key-encryption key (32 bytes, base64). Previous keys (JSON
    # object kid -> key) still unwrap until `baton secrets rotate-key` re-wraps everything.
    # Unset: generated in dev/test (``dev_secrets``), refused in production.
    secrets_kek: str = ""
    secrets_kek_id: str = "dev"
    secrets_previous_keks: str = "{}"
    # The worker pool's transit key (32 bytes, base64): the secrets a task uses travel
    # through Redis sealed under a per-(tenant, queue) key derived from it (HKDF); the API
    # derives the keys it puts in worker credentials. Previous keys are still accepted.
    # Unset: generated in dev/test (``dev_secrets``), refused in production.
    worker_transit_key: str = ""
    worker_transit_key_id: str = "dev"
    worker_transit_previous_keys: str = "{}"

    # Password hashing cost (argon2id). Tests lower it; production keeps the defaults.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=1024)
    min_password_length: int = Field(default=10, ge=8)

    # Failed-login throttling, counted in Redis per account and per client address.
    login_max_failures_per_account: int = 10
    login_max_failures_per_ip: int = 50
    login_failure_window_seconds: int = 900

    # Inbound webhooks (POST /hooks/<token>): deliveries each tenant may make per minute,
    # over every endpoint (429 past it, each refusal recorded).
    webhook_deliveries_per_minute: int = Field(default=120, ge=1)
    # Notifications (docs/notifications.md): outgoing requests and SMTP connections go
    # through the egress guard (kernel/egress.py); hosts or CIDRs listed here may be
    # private/loopback (an on-prem mail relay, say). Metadata addresses only by exact /32.
    notification_allowlist: list[str] = Field(default_factory=list)
    notification_timeout_seconds: float = Field(default=10.0, gt=0)
    notification_max_attempts: int = Field(default=5, ge=1, le=20)
    notification_retry_seconds: float = Field(default=30.0, gt=0)  # doubled per attempt
    # One notification per channel, job and event in this window; later ones are logged
    # as throttled (a flapping job does not send a hundred mails).
    notification_throttle_seconds: int = Field(default=900, ge=0)

    # Engine and admission. A tenant's quota and weight come from its row when set, else
    # from these defaults.
    tenant_max_concurrent_tasks: int = Field(default=100, ge=1)
    tenant_weight: int = Field(default=1, ge=1)
    # Per plan, e.g. BATON_PLAN_LIMITS='{"team": {"max_concurrent_tasks": 200, "weight": 2}}';
    # a plan not listed gets the two defaults above. With ``billing`` "none" (on-prem) this
    # is where every limit comes from (backend/plans/catalog.py names them; a limit not
    # given is unlimited); otherwise from the ``plans`` table (docs/billing.md).
    plan_limits: dict[str, dict[str, int]] = Field(default_factory=dict)
    # "none": on-prem, limits from configuration; "manual": hosted, plans from the
    # ``plans`` table, a tenant's plan set by platform administrators; "stripe": the same,
    # plans changed by Stripe subscriptions.
    billing: Literal["none", "manual", "stripe"] = "none"
    # How often the meter (beside the engine) rolls each tenant's usage of yesterday and
    # today up into ``usage_daily`` from the history tables and Redis counters.
    metering_seconds: float = Field(default=300.0, gt=0)
    # Stripe (``billing`` "stripe", docs/billing.md): the secret API key, the webhook
    # endpoint's signing secret, the flat monthly price of each paid plan
    # ('{"team": "price_...", "business": "price_..."}') and the metered price of
    # task-seconds over the plan's included amount. ``stripe_api_base`` is Stripe's API
    # (tests point it at a local stand-in). A subscription whose payment failed is
    # suspended after ``billing_grace_days`` and resumed when an invoice is paid.
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    stripe_prices: dict[str, str] = Field(default_factory=dict)
    stripe_metered_price: str = ""
    # Usage reported to Stripe Billing Meters while ``stripe_metered_price`` is set: a
    # ``usage_daily`` column -> the event name of the Stripe meter counting it
    # (``billing/meter_reporter.py``; the metered price must be attached to that meter).
    stripe_meters: dict[MeteredUsage, str] = Field(default_factory=_default_meters)
    billing_grace_days: float = Field(default=7.0, ge=0)

    # Outgoing email (verification, password reset, invitations). Unset host: mails are
    # written to the log instead (``baton dev``). With ``email_verification_required`` an
    # account whose address is not verified may explore but not run jobs (hosted installs).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    mail_from: str = "Baton <no-reply@baton.invalid>"
    email_verification_required: bool = False
    email_verification_ttl_seconds: int = Field(default=48 * 3600, gt=0)
    password_reset_ttl_seconds: int = Field(default=3600, gt=0)
    invitation_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    admission_quantum: int = Field(default=256, ge=1)
    # Due tenants the engine admits at once in a round (each a transaction of its own, on
    # its own connection from the pool), in the fair order.
    engine_admission_concurrency: int = Field(default=4, ge=1, le=32)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    visibility_timeout_seconds: float = Field(default=30.0, gt=0)
    # A running attempt whose heartbeats stopped this long ago is lost (3 missed beats).
    lost_after_seconds: float = Field(default=15.0, gt=0)
    task_deadline_grace_seconds: float = Field(default=10.0, ge=0)
    # Unacknowledged engine events (a failed batch, a dead replica) are retried one by one
    # once this old; one that fails three times is dead-lettered (logged, acknowledged).
    engine_recovery_seconds: float = Field(default=5.0, gt=0)
    # The engine trims dispatch and events streams below their oldest unsettled entry (and
    # prunes other history indexes in Redis) this often (backend/engine/trim.py).
    stream_trim_seconds: float = Field(default=10.0, gt=0)
    # The audit log's retention in days, never shorter than a tenant's history retention
    # (its plan's log_retention_days); unset: kept forever. Cut behind a signed checkpoint
    # (needs BATON_SECRETS_KEK; backend/retention/service.py).
    # The engine creates the history tables' weekly partitions ahead and drops those past
    # every tenant's retention this often (backend/retention/partitions.py).
    partition_maintenance_seconds: float = Field(default=3600.0, gt=0)
    audit_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    # Cron scheduler: a replica's lease on a tenant lasts this long unless renewed (a dead
    # replica's tenants move within it); it looks for due schedules at least this often.
    scheduler_lease_seconds: float = Field(default=10.0, gt=0)
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    # Batches of due tenants a replica fires at once (each batch one transaction and connection).
    scheduler_concurrency: int = Field(default=8, ge=1, le=64)
    # due tenants fired in one transaction (a handful of statements each)
    scheduler_tenants_per_transaction: int = Field(default=25, ge=1, le=500)
    # Each schedule's next fire is prepared this long before its instant (its run and task
    # runs inserted, invisible to admission until the instant); 0: fired at the instant.
    scheduler_ahead_seconds: float = Field(default=60.0, ge=0, le=3600)

    # Workers. Shell and Docker tasks are refused unless the operator allows them. Allowed
    # shell tasks run each in a sandbox (docs/security.md) with the limits below; only a
    # worker that runs nothing but trusted tasks (on-prem, tenant-hosted) should turn
    # ``worker_sandbox`` off. Python tasks run only from the listed module prefixes; http
    # tasks never reach private, loopback, link-local or metadata addresses unless
    # allow-listed.
    worker_allow_shell: bool = False
    worker_allow_docker: bool = False
    worker_sandbox: bool = True
    worker_sandbox_memory_mb: int = Field(default=1024, ge=16)
    worker_sandbox_processes: int = Field(default=128, ge=8)
    worker_sandbox_cpu_seconds: int = Field(default=3600, ge=1)
    worker_sandbox_file_mb: int = Field(default=1024, ge=1)
    worker_python_modules: list[str] = Field(default_factory=lambda: ["worker.builtins"])
    worker_http_allowlist: list[str] = Field(default_factory=list)

    # Metrics (docs/observability.md). The API serves /metrics on its own port, behind a
    # bearer token when ``metrics_token`` is set; the engine/scheduler process and workers
    # serve theirs on these ports (0: off), bound to ``metrics_host``. Tenants listed in
    # ``metrics_tenant_labels`` (ids or slugs, comma-separated or a JSON list) get their own
    # ``tenant`` label value; every other tenant is counted under "other".
    metrics_token: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_tenant_labels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    metrics_gather_seconds: float = Field(default=15.0, gt=0)
    metrics_max_queues: int = Field(default=50, ge=1)

    # Web dashboard cookies are ``Secure`` unless this says otherwise; left unset they are
    # Secure in production only (dev and test serve plain http on localhost).
    web_cookie_secure: bool | None = None
    # Templates and static assets of the dashboard; unset: the checkout's ``frontend/``.
    frontend_dir: Path | None = None

    max_request_bytes: int = 1_048_576
    demo_email: str = "demo@example.com"
    demo_password: str = "baton-demo-password"

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> Self:
        # Outside production an unset secret is generated (per installation, or per process
        # in test); in production it stays unset, and each process refuses at start the ones
        # it needs (``refuse_unsafe_for``): a worker holds no JWT secret or database password.
        if self.environment != Environment.production:
            if not self.jwt_secret:
                self.jwt_secret = self._development_secret("jwt-secret")
            if not self.app_db_password and self.app_database_url is None:
                self.app_db_password = self._development_secret("app-db-password")
            if not self.secrets_kek:
                self.secrets_kek = dev_secrets.as_key(self._development_secret("secrets-kek"))
            if not self.worker_transit_key:
                self.worker_transit_key = dev_secrets.as_key(
                    self._development_secret("worker-transit-key")
                )
        for kid, secret in self.verification_keys.items():
            if secret and len(secret.encode()) < MIN_JWT_KEY_BYTES:
                raise ValueError(f"JWT key {kid!r} is shorter than {MIN_JWT_KEY_BYTES} bytes")
        self._check_secret_keys()
        return self

    def _development_secret(self, name: str) -> str:
        if self.environment == Environment.test:
            return dev_secrets.process_secret(name)
        return dev_secrets.stored_secret(self.data_dir, name)

    def _check_secret_keys(self) -> None:
        """Secret keys must be 32 bytes, and the at-rest and in-transit keys must differ.
        Messages never include a key."""
        keks = self.secrets_keks if self.secrets_kek else {}
        transit = self.worker_transit_keys if self.worker_transit_key else {}
        if set(keks.values()) & set(transit.values()):
            raise ValueError("BATON_SECRETS_KEK and BATON_WORKER_TRANSIT_KEY must differ")

    def refuse_unsafe_for(self, *processes: Process) -> None:
        """In production, refuse what these processes would run with unsafely: a secret they
        use left unset and an unauthenticated Redis. Raises :class:`UnsafeSettings`."""
        if self.environment != Environment.production:
            return
        wanted = set(processes)
        problems: list[str] = []
        if wanted & {Process.api, Process.engine, Process.worker} and not redis_authenticated(
            self.redis_url
        ):
            problems.append(
                "BATON_REDIS_URL must name a Redis user and password in production "
                "(redis://user:password@host:6379/0; see `baton redis provision-acl`)"
            )
        if Process.api in wanted and not self.jwt_secret:
            problems.append("BATON_JWT_SECRET must be set outside development")
        if (
            wanted & {Process.api, Process.engine, Process.database}
            and self.app_database_url is None
            and not self.app_db_password
        ):
            problems.append("BATON_APP_DB_PASSWORD must be set outside development")
        if wanted & {Process.api, Process.engine} and not self.secrets_kek:
            problems.append("BATON_SECRETS_KEK must be set outside development")
        # The engine seals with it; the API derives from it the per-queue keys it puts in
        # worker credentials; a shared-pool worker opens with it (a tenant-hosted one has
        # its credential's queue keys instead).
        needs_transit = bool(wanted & {Process.api, Process.engine}) or (
            Process.worker in wanted and not self.worker_credential
        )
        if needs_transit and not self.worker_transit_key:
            problems.append("BATON_WORKER_TRANSIT_KEY must be set outside development")
        if problems:
            raise UnsafeSettings("; ".join(problems))

    @field_validator("metrics_tenant_labels", mode="before")
    @classmethod
    def _split_tenant_labels(cls, value: Any) -> Any:
        """Accept ``acme,globex`` as well as ``["acme", "globex"]``."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @cached_property
    def verification_keys(self) -> dict[str, str]:
        """Every key a token may be signed with, by kid (active key included)."""
        previous: dict[str, str] = json.loads(self.jwt_previous_keys or "{}")
        return {**previous, self.jwt_kid: self.jwt_secret}

    @cached_property
    def secrets_keks(self) -> dict[str, bytes]:
        """Every key-encryption key that may unwrap a data key, by id (current included)."""
        return keyring(
            "BATON_SECRETS_KEK", self.secrets_previous_keks, self.secrets_kek_id, self.secrets_kek
        )

    @cached_property
    def worker_transit_keys(self) -> dict[str, bytes]:
        """Every transit key a worker accepts, by id (current included)."""
        return keyring(
            "BATON_WORKER_TRANSIT_KEY",
            self.worker_transit_previous_keys,
            self.worker_transit_key_id,
            self.worker_transit_key,
        )

    @property
    def uses_development_jwt_secret(self) -> bool:
        """True when the signing key was generated here, not configured (BATON_JWT_SECRET)."""
        return dev_secrets.is_generated(self.jwt_secret)

    @property
    def is_dev(self) -> bool:
        return self.environment == Environment.dev

    @property
    def cookies_secure(self) -> bool:
        if self.web_cookie_secure is not None:
            return self.web_cookie_secure
        return self.environment == Environment.production

    def owner_database_url(self) -> str:
        if self.database_url is None:
            raise ValueError("BATON_DATABASE_URL is not set")
        return _asyncpg_url(self.database_url)

    def runtime_database_url(self) -> str:
        """URL of the unprivileged role the API and engine connect as."""
        if self.app_database_url is not None:
            return _asyncpg_url(self.app_database_url)
        owner = make_url(self.owner_database_url())
        return owner.set(username=self.app_db_role, password=self.app_db_password).render_as_string(
            hide_password=False
        )


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)

"""Baton's one settings class.

Every knob is an environment variable with the ``BATON_`` prefix (``BATON_DATABASE_URL``,
``BATON_JWT_SECRET`` ...). Outside ``environment=dev`` the class refuses to start with the
development secret or with a JWT key shorter than 32 bytes: PyJWT only warns about
short HMAC keys, so the refusal has to live here.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

DEV_JWT_SECRET = "baton-dev-only-secret-change-me-0123456789abcdef"
MIN_JWT_KEY_BYTES = 32


class Environment(StrEnum):
    dev = "dev"
    test = "test"
    production = "production"


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
    app_db_password: str = "baton-app-dev-password"
    db_pool_size: int = 10

    redis_url: str | None = None

    # Tokens. The active key signs; previous keys (JSON object kid -> secret) still verify,
    # so keys rotate without logging everybody out.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_kid: str = "k1"
    jwt_previous_keys: str = "{}"
    jwt_issuer: str = "baton"
    jwt_audience: str = "baton-api"
    access_token_ttl_seconds: int = Field(default=900, gt=0)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # Password hashing cost (argon2id). Tests lower it; production keeps the defaults.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=1024)
    min_password_length: int = Field(default=10, ge=8)

    # Failed-login throttling, counted in Redis per account and per client address.
    login_max_failures_per_account: int = 10
    login_max_failures_per_ip: int = 50
    login_failure_window_seconds: int = 900

    # Engine and admission. A tenant's quota and weight come from its row when set, else
    # from these defaults.
    tenant_max_concurrent_tasks: int = Field(default=100, ge=1)
    tenant_weight: int = Field(default=1, ge=1)
    # Per plan, e.g. BATON_PLAN_LIMITS='{"pro": {"max_concurrent_tasks": 200, "weight": 2}}';
    # a plan not listed gets the two defaults above.
    plan_limits: dict[str, dict[str, int]] = Field(default_factory=dict)
    admission_quantum: int = Field(default=256, ge=1)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    visibility_timeout_seconds: float = Field(default=30.0, gt=0)
    # A running attempt whose heartbeats stopped this long ago is lost (3 missed beats).
    lost_after_seconds: float = Field(default=15.0, gt=0)
    task_deadline_grace_seconds: float = Field(default=10.0, ge=0)
    # Unacknowledged engine events (a failed batch, a dead replica) are retried one by one
    # once this old; one that fails three times is dead-lettered (logged, acknowledged).
    engine_recovery_seconds: float = Field(default=5.0, gt=0)
    # Cron scheduler: a replica's lease on a tenant lasts this long unless renewed (a dead
    # replica's tenants move within it); it looks for due schedules at least this often.
    scheduler_lease_seconds: float = Field(default=10.0, gt=0)
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    # Due tenants a replica serves at once (each in its own transaction and connection).
    scheduler_concurrency: int = Field(default=8, ge=1, le=64)

    # Workers. Shell and Docker tasks run only where the operator allows them (on-prem or
    # tenant-hosted workers); python tasks only from the listed module prefixes; http tasks
    # never reach private, loopback, link-local or metadata addresses unless allow-listed.
    worker_allow_shell: bool = True
    worker_allow_docker: bool = True
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
        keys = self.verification_keys
        for kid, secret in keys.items():
            if len(secret.encode()) < MIN_JWT_KEY_BYTES:
                raise ValueError(f"JWT key {kid!r} is shorter than {MIN_JWT_KEY_BYTES} bytes")
        if self.environment == Environment.production:
            if self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError("BATON_JWT_SECRET must be set outside development")
            if self.app_database_url is None and self.app_db_password == "baton-app-dev-password":
                raise ValueError("BATON_APP_DB_PASSWORD must be set outside development")
        return self

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

"""A worker's settings: only what a worker needs, read without the API's packages.

The variables are the ones ``baton api`` and ``baton scheduler`` read (``BATON_REDIS_URL``,
``BATON_WORKER_*`` ..., README.md), with the same defaults and meaning, so a worker started
with ``baton-worker`` (``pip install 'baton[worker]'``, no FastAPI, SQLAlchemy or pydantic)
behaves as one started by ``baton worker`` or inside ``baton dev``. A worker never reads
``BATON_JWT_SECRET``, a database URL or ``BATON_SECRETS_KEK``: it holds no such secret.

Production (``BATON_ENVIRONMENT=production``) refuses to start (:meth:`refuse_unsafe`)
without a Redis user and password, and a shared-pool worker without
``BATON_WORKER_TRANSIT_KEY``; a tenant-hosted worker needs only its credential. Outside
production an unset transit key is the installation's development key (the data
directory's, as ``baton dev`` uses), or one per process in ``test``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from kernel.credential import CredentialError, WorkerCredential
from kernel.runtime import dev_secrets
from kernel.runtime.env import EnvReader, SettingError, keyring, read_environment
from kernel.runtime.redis import redis_authenticated
from kernel.secrets import TransitKeys
from worker.executors.base import ExecutorPolicy
from worker.runner import WorkerConfig
from worker.sandbox.limits import SandboxLimits

ENVIRONMENTS = ("dev", "test", "production")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

# Every variable a worker reads (README.md lists them). All but BATON_WORKER_NAME are the
# API's settings too (``backend.core.settings.Settings``; tests/worker/test_settings.py).
VARIABLES = (
    "BATON_ENVIRONMENT",
    "BATON_DATA_DIR",
    "BATON_REDIS_URL",
    "BATON_WORKER_CREDENTIAL",
    "BATON_WORKER_NAME",
    "BATON_HEARTBEAT_SECONDS",
    "BATON_VISIBILITY_TIMEOUT_SECONDS",
    "BATON_WORKER_ALLOW_SHELL",
    "BATON_WORKER_ALLOW_DOCKER",
    "BATON_WORKER_SANDBOX",
    "BATON_WORKER_SANDBOX_MEMORY_MB",
    "BATON_WORKER_SANDBOX_PROCESSES",
    "BATON_WORKER_SANDBOX_CPU_SECONDS",
    "BATON_WORKER_SANDBOX_FILE_MB",
    "BATON_WORKER_PYTHON_MODULES",
    "BATON_WORKER_HTTP_ALLOWLIST",
    "BATON_WORKER_TRANSIT_KEY",
    "BATON_WORKER_TRANSIT_KEY_ID",
    "BATON_WORKER_TRANSIT_PREVIOUS_KEYS",
    "BATON_METRICS_HOST",
    "BATON_WORKER_METRICS_PORT",
    "BATON_METRICS_TENANT_LABELS",
)


def checked_name(name: str | None) -> str | None:
    """A worker name as given (``--name``, ``BATON_WORKER_NAME``), refused if unusable."""
    if name is not None and not _NAME.match(name):
        raise SettingError(
            "a worker name (BATON_WORKER_NAME, --name) may hold only letters, digits and "
            f"_.:@-, at most 128 of them (got {name[:64]!r})"
        )
    return name


@dataclass(frozen=True)
class WorkerSettings:
    environment: str = "dev"
    data_dir: Path = Path(".baton-data")
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    # A tenant-hosted worker's credential (bwc_...): its Redis user, tenant, queue and keys.
    credential: str | None = field(default=None, repr=False)
    # Unset: worker-<host>-<pid>. Names must differ between running workers.
    name: str | None = None
    heartbeat_seconds: float = 5.0
    visibility_timeout_seconds: float = 30.0
    allow_shell: bool = False
    allow_docker: bool = False
    sandbox: bool = True
    sandbox_memory_mb: int = 1024
    sandbox_processes: int = 128
    sandbox_cpu_seconds: int = 3600
    sandbox_file_mb: int = 1024
    python_modules: tuple[str, ...] = ("worker.builtins",)
    http_allowlist: tuple[str, ...] = ()
    # The shared pool's transit key (base64, 32 bytes) and the previous ones (JSON id -> key).
    transit_key: str = field(default="", repr=False)
    transit_key_id: str = "dev"
    transit_previous_keys: str = field(default="{}", repr=False)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # BATON_WORKER_METRICS_PORT; 0: no metrics port
    metrics_tenant_labels: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
    ) -> WorkerSettings:
        """The settings from ``environ`` (default: the process's) over ``env_file``.
        Raises :class:`SettingError` naming the variable whose value is unusable."""
        env = EnvReader(read_environment(environ, env_file))
        name = checked_name(env.optional("worker_name"))
        settings = cls(
            environment=env.choice("environment", "dev", ENVIRONMENTS),
            data_dir=Path(env.text("data_dir", ".baton-data")),
            redis_url=env.optional("redis_url"),
            credential=env.optional("worker_credential"),
            name=name,
            heartbeat_seconds=env.number("heartbeat_seconds", 5.0, above=0),
            visibility_timeout_seconds=env.number("visibility_timeout_seconds", 30.0, above=0),
            allow_shell=env.boolean("worker_allow_shell", False),
            allow_docker=env.boolean("worker_allow_docker", False),
            sandbox=env.boolean("worker_sandbox", True),
            sandbox_memory_mb=env.integer("worker_sandbox_memory_mb", 1024, minimum=16),
            sandbox_processes=env.integer("worker_sandbox_processes", 128, minimum=8),
            sandbox_cpu_seconds=env.integer("worker_sandbox_cpu_seconds", 3600, minimum=1),
            sandbox_file_mb=env.integer("worker_sandbox_file_mb", 1024, minimum=1),
            python_modules=env.text_list("worker_python_modules", ("worker.builtins",)),
            http_allowlist=env.text_list("worker_http_allowlist", ()),
            transit_key=env.text("worker_transit_key", ""),
            transit_key_id=env.text("worker_transit_key_id", "dev"),
            transit_previous_keys=env.text("worker_transit_previous_keys", "{}"),
            metrics_host=env.text("metrics_host", "127.0.0.1"),
            metrics_port=env.integer("worker_metrics_port", 0, minimum=0, maximum=65535),
            metrics_tenant_labels=env.text_list("metrics_tenant_labels", (), commas=True),
        )
        if settings.transit_key:
            settings.pool_transit_keys()  # a damaged key is refused now, not at the first task
        return settings

    @property
    def is_dev(self) -> bool:
        return self.environment == "dev"

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def refuse_unsafe(self) -> None:
        """In production, refuse an unauthenticated Redis and, for a shared-pool worker (no
        credential), a missing transit key. Raises :class:`SettingError` saying what to set."""
        if not self.is_production:
            return
        problems: list[str] = []
        if not self.credential and not redis_authenticated(self.redis_url):
            problems.append(
                "BATON_REDIS_URL must name a Redis user and password in production "
                "(redis://user:password@host:6379/0; see `baton redis provision-acl`)"
            )
        if not self.credential and not self.transit_key:
            problems.append("BATON_WORKER_TRANSIT_KEY must be set outside development")
        if problems:
            raise SettingError("; ".join(problems))

    def pool_transit_keys(self) -> TransitKeys:
        """The shared pool's transit keys: the configured ones, else (dev, test) the
        installation's development key. Raises :class:`SettingError`."""
        current = self.transit_key
        if not current:
            if self.is_production:
                raise SettingError("BATON_WORKER_TRANSIT_KEY must be set outside development")
            name = "worker-transit-key"
            generated = (
                dev_secrets.process_secret(name)
                if self.environment == "test"
                else dev_secrets.stored_secret(self.data_dir, name)
            )
            current = dev_secrets.as_key(generated)
        ring = keyring(
            "BATON_WORKER_TRANSIT_KEY", self.transit_previous_keys, self.transit_key_id, current
        )
        return TransitKeys(ring)

    def policy(self) -> ExecutorPolicy:
        """What this worker lets tasks do."""
        return ExecutorPolicy(
            allow_shell=self.allow_shell,
            allow_docker=self.allow_docker,
            sandbox=self.sandbox,
            sandbox_limits=SandboxLimits(
                memory_mb=self.sandbox_memory_mb,
                processes=self.sandbox_processes,
                cpu_seconds=self.sandbox_cpu_seconds,
                file_mb=self.sandbox_file_mb,
            ),
            docker_confined=self.sandbox,
            python_modules=self.python_modules,
            http_allowlist=self.http_allowlist,
        )

    def config(
        self,
        *,
        queues: list[str] | tuple[str, ...],
        concurrency: int,
        tenant_id: str | None = None,
        transit_keys: TransitKeys | None = None,
    ) -> WorkerConfig:
        """The worker's configuration for these queues (``tenant_id`` and ``transit_keys``:
        a tenant-hosted worker's, from its credential)."""
        config = WorkerConfig(
            queues=tuple(queues),
            concurrency=concurrency,
            tenant_id=tenant_id,
            heartbeat_seconds=self.heartbeat_seconds,
            visibility_timeout_seconds=self.visibility_timeout_seconds,
            policy=self.policy(),
            # A tenant-hosted worker's own keys, even none: never the pool's.
            transit_keys=self.pool_transit_keys() if transit_keys is None else transit_keys,
        )
        return replace(config, name=self.name) if self.name else config


@dataclass(frozen=True)
class Plan:
    """What a worker process starts with: where Redis is (as which user) and its config."""

    redis_url: str = field(repr=False)
    config: WorkerConfig


def plan(
    settings: WorkerSettings,
    *,
    queues: list[str] | None = None,
    concurrency: int = 8,
    credential: str | None = None,
    name: str | None = None,
) -> Plan:
    """Check the settings and options a worker was started with and resolve them: a
    credential (``--credential``, else ``BATON_WORKER_CREDENTIAL``) makes it a tenant-hosted
    worker, which serves its credential's queue only, as the credential's Redis user;
    ``name`` (``--name``) wins over ``BATON_WORKER_NAME``.
    Raises :class:`SettingError` or :class:`CredentialError` (say it and exit 2)."""
    credential = credential or settings.credential
    if name is not None:
        settings = replace(settings, name=checked_name(name))
    chosen = list(queues or ["default"])
    if not 1 <= concurrency <= 10_000:
        raise SettingError(f"the concurrency must be between 1 and 10000 (got {concurrency})")
    if not credential:
        settings.refuse_unsafe()
        if settings.redis_url is None:
            raise SettingError("BATON_REDIS_URL is not set (redis://user:password@host:6379/0)")
        config = settings.config(queues=chosen, concurrency=concurrency)
        return Plan(redis_url=settings.redis_url, config=config)
    parsed = WorkerCredential.parse(credential)
    redis_url = parsed.connection_url(settings.redis_url)
    if chosen not in (["default"], [parsed.queue]):
        raise CredentialError(f"this credential serves queue {parsed.queue!r} only")
    replace(settings, credential=credential).refuse_unsafe()
    config = settings.config(
        queues=[parsed.queue],
        concurrency=concurrency,
        tenant_id=parsed.tenant_id,
        transit_keys=parsed.queue_transit_keys(),
    )
    return Plan(redis_url=redis_url, config=config)

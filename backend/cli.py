"""The ``baton`` command line: one entry point for every process and chore."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import typer
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit_service
from backend.core.db import commit, create_engine, create_sessionmaker, scope_to_tenant
from backend.core.schema import provision_runtime_role, run_migrations
from backend.core.settings import Process, Settings, UnsafeSettings
from backend.processes import run_processes, worker_config
from backend.tenants.repository import TenantDirectory
from kernel.runtime.logs import configure_logging
from worker.main import start as start_worker

app = typer.Typer(help="Baton: multi-tenant job orchestration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Platform administration.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log.", no_args_is_help=True)
secrets_app = typer.Typer(help="Tenant secrets.", no_args_is_help=True)
redis_app = typer.Typer(help="Redis access (ACL users).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(redis_app, name="redis")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(secrets_app, name="secrets")

log = logging.getLogger("baton.cli")


def _echo(message: str) -> None:
    typer.echo(message)


def _settings_for(*processes: Process, settings: Settings | None = None) -> Settings:
    """The settings, refused (exit 2, with the reason) when unsafe for these processes."""
    settings = settings or Settings()
    try:
        settings.refuse_unsafe_for(*processes)
    except UnsafeSettings as error:
        typer.echo(f"Refusing to start: {error}", err=True)
        raise typer.Exit(2) from error
    return settings


@asynccontextmanager
async def _session_as(url: str) -> AsyncIterator[AsyncSession]:
    """A session on its own one-connection engine, committed on success (CLI chores)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await commit(session)
    finally:
        await engine.dispose()


def _session(settings: Settings) -> AbstractAsyncContextManager[AsyncSession]:
    """A session as the runtime role (row-level security applies)."""
    return _session_as(settings.runtime_database_url())


def _owner_session(settings: Settings) -> AbstractAsyncContextManager[AsyncSession]:
    """A session as the owner role, for what the runtime role may not do (superuser flag)."""
    return _session_as(settings.owner_database_url())


def upgrade_database(settings: Settings) -> None:
    """Apply migrations as the owner, then provision the runtime role."""
    run_migrations(settings.owner_database_url())
    asyncio.run(provision_runtime_role(settings))


def with_embedded_services(settings: Settings) -> Settings:
    """Fill in embedded PostgreSQL/Redis for whichever URL is not configured."""
    from backend.core.embedded import start_postgres, start_redis

    updates: dict[str, str] = {}
    data_dir = settings.data_dir.resolve()
    if settings.database_url is None:
        updates["database_url"] = start_postgres(data_dir).url
        _echo(f"Embedded PostgreSQL running, data in {data_dir / 'postgres'}")
    if settings.redis_url is None:
        updates["redis_url"] = start_redis(data_dir).url
        _echo(f"Embedded Redis running, data in {data_dir / 'redis'}")
    return settings.model_copy(update=updates) if updates else settings


def dev_shell(settings: Settings) -> Settings:
    """``baton dev`` runs shell tasks (the demo's jobs use them) - sandboxed.

    Unless ``BATON_WORKER_ALLOW_SHELL`` says otherwise, shell is allowed in dev, and then
    only in the sandbox whatever ``BATON_WORKER_SANDBOX`` says: turning the sandbox off
    needs shell allowed explicitly too.
    """
    if "worker_allow_shell" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"worker_allow_shell": True, "worker_sandbox": True})


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``0.0.0.0`` and ``::`` are not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refuse_public_development_secret(settings: Settings) -> None:
    """Exit unless the API would listen on loopback only, or its JWT secret is configured:
    a generated development secret sits in a file in the data directory, and a deployment
    that forgot ``BATON_JWT_SECRET`` must not serve the network with it."""
    if settings.uses_development_jwt_secret and not is_loopback(settings.host):
        typer.echo(
            f"Refusing to serve on {settings.host}: the JWT secret is a development secret "
            f"generated in {settings.data_dir}. Set BATON_JWT_SECRET (32+ random bytes, e.g. "
            "`openssl rand -hex 32`) or listen on 127.0.0.1 (BATON_HOST).",
            err=True,
        )
        raise typer.Exit(2)


def with_embedded_database(settings: Settings) -> Settings:
    """Without ``BATON_DATABASE_URL`` or ``BATON_APP_DATABASE_URL``: the embedded PostgreSQL
    kept in the data directory, as ``baton dev`` uses it (reused when it runs, else
    started), so the admin commands work next to ``make run``."""
    if settings.database_url is not None or settings.app_database_url is not None:
        return settings
    from backend.core.embedded import start_postgres

    server = start_postgres(settings.data_dir.resolve())
    return settings.model_copy(update={"database_url": server.url})


@app.command()
def dev() -> None:
    """API, scheduler and worker in one process; embedded PostgreSQL/Redis if no URLs."""
    settings = Settings()
    refuse_public_development_secret(settings)
    settings = dev_shell(with_embedded_services(settings))
    _settings_for(Process.api, Process.engine, Process.worker, settings=settings)
    configure_logging(json_logs=False)
    upgrade_database(settings)

    async def seed() -> bool:
        from backend.admin.service import ensure_demo_tenant, promote_superuser

        async with _session(settings) as session:
            created = await ensure_demo_tenant(session, settings)
        if created:  # the dev instance's operator sees the admin console too
            async with _owner_session(settings) as owner:
                await promote_superuser(owner, settings.demo_email)
        return created

    created = asyncio.run(seed())
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    _echo("")
    _echo(f"Baton is running at {url}  (API docs: {url}/docs)")
    _echo(
        f"Demo login: {settings.demo_email} / {settings.demo_password}"
        + ("  (just created)" if created else "")
    )
    _echo("")
    config = worker_config(settings, queues=["default"], concurrency=8)
    asyncio.run(run_processes(settings, api=True, engine=True, worker=config))


@app.command()
def api() -> None:
    """Serve the REST API (needs BATON_DATABASE_URL and BATON_REDIS_URL)."""
    settings = _settings_for(Process.api)
    refuse_public_development_secret(settings)
    configure_logging(json_logs=not settings.is_dev)
    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        runner.run(run_processes(settings, api=True, engine=False, worker=None))


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``uvicorn[standard]`` brings it), else the
    standard one. uvicorn would choose it itself, but only when it runs the loop; ``baton
    api`` runs uvicorn inside its own loop, so it chooses here: a socket write and a loop
    iteration cost several times less, and the API makes a dozen of them per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def scheduler() -> None:
    """The engine: admission, worker events, deadlines and the Redis reconciler."""
    settings = _settings_for(Process.engine)
    configure_logging(json_logs=not settings.is_dev)
    asyncio.run(run_processes(settings, api=False, engine=True, worker=None))


@app.command()
def worker(
    queue: list[str] = typer.Option(["default"], help="Queue to serve (repeatable)"),
    concurrency: int = typer.Option(8, min=1, max=10_000, help="Tasks run at once"),
    credential: str | None = typer.Option(
        None,
        envvar="BATON_WORKER_CREDENTIAL",
        show_envvar=True,
        help="A tenant-hosted worker's credential (bwc_...): serves its tenant's queue only",
    ),
    name: str | None = typer.Option(
        None, envvar="BATON_WORKER_NAME", help="This worker's name (default worker-<host>-<pid>)"
    ),
) -> None:
    """A worker: runs tasks from Redis Streams; never connects to PostgreSQL.

    With ``--credential`` it is a tenant-hosted worker: the credential carries its Redis
    user, tenant and queue, and nothing else is needed (no JWT secret, no database). The
    same as ``baton-worker``, the command of an installation with the worker extra only.
    """
    raise typer.Exit(
        start_worker(queues=queue, concurrency=concurrency, credential=credential, name=name)
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema and provision the runtime role."""
    settings = _settings_for(Process.database, settings=with_embedded_database(Settings()))
    configure_logging(json_logs=not settings.is_dev)
    upgrade_database(settings)
    _echo("Database is up to date.")


@admin_app.command("create-superuser")
def create_superuser(
    email: str = typer.Option(..., prompt=True),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
) -> None:
    """Create a platform administrator (or promote an existing account). Connects as the
    owner role (BATON_DATABASE_URL) too: only it may set the superuser flag."""
    from backend.admin.service import ensure_account, promote_superuser

    settings = _settings_for(Process.database, settings=with_embedded_database(Settings()))

    async def run() -> None:
        async with _session(settings) as session:
            user = await ensure_account(session, settings, email=email, password=password)
            address = user.email  # read before the commit expires the row
        async with _owner_session(settings) as owner:
            await promote_superuser(owner, address)

    asyncio.run(run())
    _echo(f"{email.lower()} is a platform administrator.")


@admin_app.command("set-password")
def set_password(
    email: str = typer.Option(..., prompt=True),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
) -> None:
    """Set a platform administrator's password (their sessions end). Connects as the owner
    role: the API's role may not change it, nor mail a reset link for it."""
    from backend.admin.service import set_platform_admin_password

    settings = _settings_for(Process.database, settings=with_embedded_database(Settings()))

    async def run() -> bool:
        async with _owner_session(settings) as owner:
            return await set_platform_admin_password(owner, settings, email, password)

    if not asyncio.run(run()):
        _echo(f"{email.lower()} is not a platform administrator.")
        raise typer.Exit(1)
    _echo(f"The password of {email.lower()} is set; its sessions have ended.")


@audit_app.command("verify")
def audit_verify(
    tenant: str | None = typer.Option(None, help="Tenant slug; all tenants when omitted"),
) -> None:
    """Check every tenant's audit hash chain; exit 1 at the first broken link.

    A chain that retention cut starts at a signed checkpoint; its signature is checked
    with the secrets key-encryption keys when they are configured (BATON_SECRETS_KEK)."""
    settings = _settings_for(Process.database, settings=with_embedded_database(Settings()))
    keys = audit_service.checkpoint_keys(settings.secrets_keks) if settings.secrets_kek else None

    async def run() -> bool:
        async with _session(settings) as session:
            directory = TenantDirectory(session)
            if tenant is not None:
                found = await directory.get_by_slug(tenant)
                if found is None:
                    _echo(f"No tenant {tenant!r}")
                    return False
                tenants = [found]
            else:
                tenants = await directory.all()
            intact = True
            for item in tenants:
                await scope_to_tenant(session, item.id)
                report = await audit_service.verify_chain(session, item.id, checkpoint_keys=keys)
                if report.intact:
                    waiting = (
                        f"; {report.unsealed} more awaiting sealing" if report.unsealed else ""
                    )
                    _echo(f"{item.slug}: ok ({report.events_checked} events{waiting})")
                else:
                    intact = False
                    _echo(f"{item.slug}: BROKEN at seq {report.broken_seq}: {report.reason}")
            return intact

    if not asyncio.run(run()):
        sys.exit(1)


@secrets_app.command("rotate-key")
def secrets_rotate_key() -> None:
    """Re-wrap every secret's data key with the current BATON_SECRETS_KEK (previous keys in
    BATON_SECRETS_PREVIOUS_KEKS unwrap them). Idempotent; exit 1 if a key could not be
    unwrapped."""
    from backend.secrets.service import RotationReport, rewrap_tenant

    settings = _settings_for(Process.database, settings=with_embedded_database(Settings()))
    if not settings.secrets_kek:
        typer.echo("Set BATON_SECRETS_KEK (the new key) and BATON_SECRETS_PREVIOUS_KEKS", err=True)
        raise typer.Exit(2)
    report = RotationReport()

    async def run() -> None:
        async with _session(settings) as session:
            for item in await TenantDirectory(session).all():
                await scope_to_tenant(session, item.id)
                await rewrap_tenant(session, settings, item.id, report)

    asyncio.run(run())
    _echo(
        f"Key {settings.secrets_kek_id}: {report.rewrapped} re-wrapped, "
        f"{report.current} already current, {report.failed} failed"
    )
    if report.failed:
        sys.exit(1)


@redis_app.command("provision-acl")
def redis_provision_acl() -> None:
    """Create or update the engine's and the shared workers' Redis ACL users.

    Connects with BATON_REDIS_ADMIN_URL (else BATON_REDIS_URL) and sets the users named by
    BATON_REDIS_ENGINE_USER / BATON_REDIS_WORKER_USER with BATON_REDIS_ENGINE_PASSWORD /
    BATON_REDIS_WORKER_PASSWORD; tenant-hosted workers' users are made by the API.
    """
    from backend.workers.acl import provision_roles

    settings = Settings()
    url = settings.redis_admin_url or settings.redis_url
    if not url:
        typer.echo("Set BATON_REDIS_ADMIN_URL or BATON_REDIS_URL", err=True)
        raise typer.Exit(2)
    if not settings.redis_engine_password or not settings.redis_worker_password:
        typer.echo("Set BATON_REDIS_ENGINE_PASSWORD and BATON_REDIS_WORKER_PASSWORD", err=True)
        raise typer.Exit(2)
    users = asyncio.run(provision_roles(url, settings))
    for user in users:
        _echo(f"Redis user {user} is up to date.")

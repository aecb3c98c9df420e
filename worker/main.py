"""``baton-worker``: a worker process on its own, with only ``pip install 'baton[worker]'``.

``baton-worker [--queue Q ...] [--concurrency N] [--credential bwc_...] [--name NAME]``
reads its settings from the environment (``worker.settings``), connects to Redis - never to
PostgreSQL - and runs tasks until SIGINT or SIGTERM, which stop it reading and let running
tasks finish within the grace period (``worker.runner``). ``baton worker`` of a full
installation runs this same code. Unusable settings or options exit with status 2 and the
reason on stderr. It imports nothing of the API's (``tests/worker/test_standalone.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

import structlog

from kernel.credential import CredentialError
from kernel.dependencies import supervised
from kernel.runtime import metrics
from kernel.runtime.env import SettingError
from kernel.runtime.logs import configure_logging
from kernel.runtime.redis import create_redis
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker
from worker.sandbox.probe import unavailable_reason
from worker.settings import Plan, WorkerSettings, plan

log = structlog.get_logger(__name__)


async def log_shell_policy(policy: ExecutorPolicy) -> None:
    """Say once, at start, how this worker treats shell tasks (and why it refuses them)."""
    if not policy.allow_shell:
        log.info("worker.shell.refused", setting="BATON_WORKER_ALLOW_SHELL")
    elif not policy.sandbox:
        log.warning("worker.shell.unsandboxed", setting="BATON_WORKER_SANDBOX")
    elif (reason := await unavailable_reason()) is not None:
        log.error(
            "worker.sandbox.unavailable",
            reason=reason,
            effect="shell tasks are refused",
            setting="BATON_WORKER_SANDBOX",
        )
    else:
        log.info("worker.sandbox.ready")


async def run_worker(settings: WorkerSettings, started: Plan) -> None:
    """Run one worker until SIGINT/SIGTERM (or until its credential is refused)."""
    metrics.configure(settings.metrics_tenant_labels)
    closers: list[Callable[[], None]] = []
    if settings.metrics_port:
        closers.append(metrics.serve_metrics(settings.metrics_host, settings.metrics_port))
        log.info("metrics.serving", host=settings.metrics_host, port=settings.metrics_port)
    redis = create_redis(started.redis_url)
    try:
        await log_shell_policy(started.config.policy)
        worker = Worker(redis, started.config)
        stopping = asyncio.Event()

        def stop() -> None:
            stopping.set()
            worker.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await supervised("worker", worker.run, stopping)
    finally:
        for close in closers:
            close()
        await redis.aclose()


def start(
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 8,
    credential: str | None = None,
    name: str | None = None,
) -> int:
    """Start a worker from the environment and these options; its exit status (2: refused,
    the reason written to stderr)."""
    try:
        settings = WorkerSettings.from_env()
        started = plan(
            settings,
            queues=list(queues) if queues else None,
            concurrency=concurrency,
            credential=credential,
            name=name,
        )
    except (SettingError, CredentialError) as error:
        sys.stderr.write(f"Refusing to start: {error}\n")
        return 2
    configure_logging(json_logs=not settings.is_dev)
    asyncio.run(run_worker(settings, started))
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line of ``baton-worker`` (``baton worker`` takes the same options)."""
    parser = argparse.ArgumentParser(
        prog="baton-worker",
        description=(
            "A Baton worker: runs tasks from Redis Streams; never connects to PostgreSQL. "
            "Settings come from BATON_* environment variables (BATON_REDIS_URL, ...)."
        ),
    )
    parser.add_argument(
        "--queue",
        action="append",
        metavar="QUEUE",
        help="queue to serve (repeatable; default: default)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="tasks run at once (1-10000; default 8)"
    )
    parser.add_argument(
        "--credential",
        default=None,
        help="a tenant-hosted worker's credential (bwc_...; or BATON_WORKER_CREDENTIAL): "
        "serves its tenant's queue only",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="this worker's name (or BATON_WORKER_NAME; default worker-<host>-<pid>)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``baton-worker`` console script."""
    arguments = parser().parse_args(argv)
    sys.exit(
        start(
            queues=arguments.queue,
            concurrency=arguments.concurrency,
            credential=arguments.credential,
            name=arguments.name,
        )
    )


if __name__ == "__main__":
    main()

"""Riding out PostgreSQL and Redis outages: which errors are outages, backoff, status.

Every long-lived loop (engine, cron scheduler, worker, metrics gatherer) runs each
iteration under :meth:`Dependencies.guard`. An error that means a dependency cannot be
reached (refused or reset connections, timeouts, a PostgreSQL backend terminated, Redis
loading its data) marks that dependency down - one ``dependency.down`` log line and
``baton_dependency_up{dependency} 0`` - and the loop waits with capped exponential backoff
before its next try; the first iteration that succeeds marks it up again
(``dependency.up`` with the outage's length). No outage, however long, ends a process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal

import structlog
from redis import exceptions as redis_errors

from kernel.metrics import DEPENDENCY_OUTAGES, DEPENDENCY_UP

log = structlog.get_logger(__name__)

# A worker installed alone (the ``worker`` extra) has no PostgreSQL client: none of its
# errors can then occur, and the classification below skips them.
sa_errors: ModuleType | None
try:
    from sqlalchemy import exc as sa_errors
except ImportError:  # pragma: no cover - exercised by the worker-alone import test
    sa_errors = None

Dependency = Literal["postgres", "redis"]

BACKOFF_FIRST = 0.25  # seconds before the first retry
BACKOFF_CAP = 5.0  # never wait longer between tries: resume within this of the return

_REDIS_OUTAGES = (
    redis_errors.ConnectionError,  # refused, reset, closed (includes BusyLoadingError)
    redis_errors.TimeoutError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)


def outage_of(error: BaseException) -> Dependency | None:
    """Which dependency ``error`` says is unreachable, or None for any other error."""
    if isinstance(error, _REDIS_OUTAGES):
        return "redis"
    if sa_errors is not None:
        if isinstance(error, sa_errors.DBAPIError):
            if error.connection_invalidated or isinstance(
                error, sa_errors.OperationalError | sa_errors.InterfaceError
            ):
                return "postgres"
            return _asyncpg_outage(error.orig)
        if isinstance(error, sa_errors.TimeoutError):  # pool exhausted while connections hang
            return "postgres"
    if _asyncpg_outage(error) is not None:
        return "postgres"
    if isinstance(error, OSError | TimeoutError):
        # redis-py wraps every socket error in its own ConnectionError; a bare one comes
        # from asyncpg connecting (refused, reset, timed out).
        return "postgres"
    return None


def _asyncpg_outage(error: BaseException | None) -> Dependency | None:
    try:
        import asyncpg
    except ImportError:  # the worker alone: no asyncpg, so no asyncpg error
        return None

    cause = getattr(error, "__cause__", None)
    for candidate in (error, cause):
        if isinstance(
            candidate,
            asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | asyncpg.exceptions.CrashShutdownError
            | asyncpg.exceptions.TooManyConnectionsError
            | ConnectionError,
        ):
            return "postgres"
        # The database refuses connections (ALLOW_CONNECTIONS false, being dropped or
        # restored): SQLSTATE 55000 at connect time. Counted as an event's own failure, it
        # dead-lettered the engine's events during such an outage.
        if isinstance(
            candidate, asyncpg.exceptions.ObjectNotInPrerequisiteStateError
        ) and "not currently accepting connections" in str(candidate):
            return "postgres"
    return None


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 0.25 s, 0.5 s, 1 s ... at most ``cap``."""

    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    tries: int = 0

    def next_delay(self) -> float:
        nominal = min(self.first * 2**self.tries, self.cap)
        self.tries += 1
        return nominal / 2 + random.uniform(0, nominal / 2)  # noqa: S311 (not for secrets)

    def reset(self) -> None:
        self.tries = 0


@dataclass
class Dependencies:
    """This process's view of its dependencies (one instance: :data:`STATUS`)."""

    down_since: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def mark_down(self, dependency: Dependency, error: BaseException, *, where: str) -> None:
        self.last_error[dependency] = f"{type(error).__name__}: {error}"[:300]
        if dependency in self.down_since:
            return
        self.down_since[dependency] = time.monotonic()
        DEPENDENCY_UP.labels(dependency).set(0)
        DEPENDENCY_OUTAGES.labels(dependency).inc()
        log.warning(
            "dependency.down", dependency=dependency, where=where, error=self.last_error[dependency]
        )

    def mark_up(self, dependency: Dependency, *, where: str) -> None:
        since = self.down_since.pop(dependency, None)
        if since is None:
            return
        DEPENDENCY_UP.labels(dependency).set(1)
        log.info(
            "dependency.up",
            dependency=dependency,
            where=where,
            outage_seconds=round(time.monotonic() - since, 3),
        )

    def is_down(self, dependency: Dependency) -> bool:
        return dependency in self.down_since

    def report(self) -> dict[str, dict[str, object]]:
        """Per dependency: up or down, for how long, the last error (for /readyz)."""
        now = time.monotonic()
        report: dict[str, dict[str, object]] = {}
        for dependency in ("postgres", "redis"):
            since = self.down_since.get(dependency)
            report[dependency] = (
                {"up": True}
                if since is None
                else {
                    "up": False,
                    "down_seconds": round(now - since, 1),
                    "error": self.last_error.get(dependency, ""),
                }
            )
        return report


STATUS = Dependencies()


class Guard:
    """One loop's outage handling: ``await guard.run(iteration())`` for each iteration.

    An outage error is swallowed (the dependency marked down, then a backoff sleep); any
    other error too, logged with its traceback under ``<loop>.iteration_failed``, then the
    same backoff - one bad iteration must not end the process. Success resets the backoff
    and marks up what this loop had seen down.
    """

    def __init__(self, loop: str, status: Dependencies = STATUS) -> None:
        self.loop = loop
        self.status = status
        self.backoff = Backoff()
        self.seen_down: set[Dependency] = set()
        self.failed_at: float | None = None  # monotonic time of the last failed iteration

    async def run(self, step: Awaitable[object]) -> bool:
        """Await ``step`` (one iteration); True if it succeeded, False after a backoff."""
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the loop's last line of defence (classified below)
            self.failed_at = time.monotonic()
            dependency = outage_of(error)
            if dependency is not None:
                self.seen_down.add(dependency)
                self.status.mark_down(dependency, error, where=self.loop)
            else:
                log.exception(f"{self.loop}.iteration_failed", error=type(error).__name__)
            await asyncio.sleep(self.backoff.next_delay())
            return False
        self.backoff.reset()
        for dependency in sorted(self.seen_down):
            self.status.mark_up(dependency, where=self.loop)
        self.seen_down.clear()
        return True


async def supervised(
    name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run a process's component until it returns; if it raises before shutdown
    (``stopping``), log and start it again after a backoff. Every loop already rides out
    outages on its own; this is the last line of defence, so that no error ends a process
    that should keep serving."""
    backoff = Backoff()
    while True:
        try:
            await run()
            return
        except Exception as error:  # the process's last line of defence
            if stopping.is_set():
                raise
            log.exception("process.component_failed", component=name, error=type(error).__name__)
            await asyncio.sleep(backoff.next_delay())

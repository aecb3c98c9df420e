"""Cross-domain side effects without mutual imports.

When something in one domain must make another react (a job's new version must update its
schedule), the domain where it happens declares a :class:`Hook` and fires it; the reacting
domain's function is connected to it in one place, ``backend/wiring.py``, which every
process imports. The domain that fires never imports the one that reacts, so imports keep
running one way (docs/architecture.md). Handlers run in the caller's transaction, in the
order connected; what must wait for the commit uses ``backend.core.db.after_commit``.

A hook declared ``required`` refuses to fire while nothing is connected: a process that
forgot the wiring fails at once instead of silently skipping the side effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")


class HookNotWired(RuntimeError):
    """A required hook fired with no handler: ``backend.wiring`` was not imported."""


class Hook(Generic[P]):
    """A named point where one domain announces a change other domains may react to."""

    def __init__(self, name: str, *, required: bool = False) -> None:
        self.name = name
        self.required = required
        self._handlers: list[Callable[P, Awaitable[None]]] = []

    @property
    def handlers(self) -> tuple[Callable[P, Awaitable[None]], ...]:
        return tuple(self._handlers)

    def connect(self, handler: Callable[P, Awaitable[None]]) -> None:
        """React to this hook with ``handler`` (connecting the same handler twice is a no-op)."""
        if handler not in self._handlers:
            self._handlers.append(handler)

    async def fire(self, *args: P.args, **kwargs: P.kwargs) -> None:
        if self.required and not self._handlers:
            raise HookNotWired(f"hook {self.name!r} has no handler: import backend.wiring")
        for handler in self._handlers:
            await handler(*args, **kwargs)

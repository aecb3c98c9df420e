"""Engines that fail on purpose, for the engine's tests."""

from __future__ import annotations

import uuid

from backend.engine.admission import Admission
from backend.engine.events import Effects
from backend.engine.loop import Engine


class DiesAfterCommit(Engine):
    """The first time a committed batch dispatched successors, stops dead before
    publishing them and acknowledging the batch - what kill -9 leaves at that point: the
    transaction committed, the events pending, the dispatches only in the outbox."""

    died = False

    async def _after_commit(
        self,
        tenant_id: uuid.UUID,
        stream: str,
        entry_ids: list[str],
        outbox_key: str,
        admission: Admission | None,
        hosted: dict[str, frozenset[str]],
        effects: Effects,
    ) -> None:
        if not self.died and admission is not None and admission.messages:
            self.died = True
            self.stop()
            return
        await super()._after_commit(
            tenant_id, stream, entry_ids, outbox_key, admission, hosted, effects
        )

"""Resolve the secrets of dispatched tasks and seal them for the worker pool.

Called by admission for the messages it is about to XADD: one query for every secret the
batch references, each value decrypted once, then sealed per message under the key of
its (tenant, queue) pair, derived by HKDF from the pool's transit key
(:func:`transit_key_for`), and bound to the message's tenant, queue, task run and attempt.
A secret that does not exist (or cannot be decrypted) is named in the sealed payload, and
the worker fails that attempt with a clear error instead of running it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.settings import Settings
from backend.secrets import crypto
from backend.secrets.repository import SecretRepository
from backend.secrets.service import sealed_of
from kernel.secrets import queue_transit_key, referenced_names, seal_transit
from kernel.wire.protocol import TaskMessage

log = structlog.get_logger(__name__)


def transit_key_for(settings: Settings, tenant_id: uuid.UUID, queue: str) -> tuple[str, bytes]:
    """(key id, key) that seals secrets for the workers serving ``tenant_id``'s ``queue``.

    Each tenant queue has a key of its own, derived from the pool key in settings: the
    shared pool derives it the same way, a tenant-hosted worker gets it in its credential.
    """
    key_id = settings.worker_transit_key_id
    return key_id, queue_transit_key(settings.worker_transit_keys[key_id], str(tenant_id), queue)


async def seal_task_secrets(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, messages: list[TaskMessage]
) -> list[TaskMessage]:
    """``messages`` with the secrets each one references sealed into ``secrets``."""
    wanted = [referenced_names(message.spec) for message in messages]
    every = set().union(*wanted)
    if not every:
        return messages
    values: dict[str, str] = {}
    unreadable: set[str] = set()
    for secret in await SecretRepository(session, tenant_id).by_names(every):
        try:
            values[secret.name] = crypto.unseal(settings, tenant_id, secret.name, sealed_of(secret))
        except crypto.SecretUnreadable as error:
            unreadable.add(secret.name)
            log.error("secrets.unreadable", tenant_id=str(tenant_id), secret=secret.name,
                      key_id=secret.key_id, error=str(error))  # fmt: skip
    sealed: list[TaskMessage] = []
    for message, names in zip(messages, wanted, strict=True):
        if not names:
            sealed.append(message)
            continue
        payload = {
            "values": {name: values[name] for name in sorted(names) if name in values},
            "missing": sorted(names - values.keys() - unreadable),
            "unreadable": sorted(names & unreadable),
        }
        key_id, key = transit_key_for(settings, tenant_id, message.queue)
        sealed.append(replace(message, secrets=seal_transit(key_id, key, message, payload)))
    return sealed

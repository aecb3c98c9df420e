"""Secrets in transit per tenant queue: a tenant-hosted worker's credential carries the key
of its own queue, derived from the pool key, and never the pool key itself."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from backend.core.settings import Environment, Settings
from backend.secrets.dispatch import transit_key_for
from backend.workers.service import queue_transit_keys
from kernel.credential import WorkerCredential
from kernel.secrets import SecretsUnavailable, TransitKeys, open_transit, seal_transit
from kernel.wire.protocol import TaskMessage

SETTINGS = Settings(_env_file=None, environment=Environment.test)  # type: ignore[call-arg]
TENANT = str(uuid.uuid4())


def sealed_for(tenant_id: str, queue: str) -> TaskMessage:
    """A message sealed the way the engine seals it at dispatch."""
    message = TaskMessage(
        tenant_id=tenant_id,
        run_id="r",
        task_run_id="tr",
        task_name="t",
        attempt=1,
        spec={},
        queue=queue,
    )
    key_id, key = transit_key_for(SETTINGS, uuid.UUID(tenant_id), queue)
    return replace(message, secrets=seal_transit(key_id, key, message, {"values": {"A": "v"}}))


def hosted_keys(queue: str) -> TransitKeys:
    credential = WorkerCredential(
        tenant_id=TENANT,
        queue=queue,
        redis_user="bw-x",
        redis_password="p" * 32,
        transit_keys=queue_transit_keys(SETTINGS, TENANT, queue),
    )
    return WorkerCredential.parse(credential.encode()).queue_transit_keys()


def test_a_hosted_worker_opens_its_own_queue_only() -> None:
    keys = hosted_keys("builds")
    assert set(keys.keys.values()).isdisjoint(SETTINGS.worker_transit_keys.values())
    assert open_transit(sealed_for(TENANT, "builds"), keys) == {"A": "v"}
    with pytest.raises(SecretsUnavailable):
        open_transit(sealed_for(TENANT, "other-queue"), keys)
    with pytest.raises(SecretsUnavailable):
        open_transit(sealed_for(str(uuid.uuid4()), "builds"), keys)


def test_the_shared_pool_derives_every_queue_key_from_the_pool_key() -> None:
    pool = TransitKeys(dict(SETTINGS.worker_transit_keys))
    assert open_transit(sealed_for(TENANT, "builds"), pool) == {"A": "v"}
    assert open_transit(sealed_for(str(uuid.uuid4()), "default"), pool) == {"A": "v"}

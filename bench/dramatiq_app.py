"""The Dramatiq side's broker and its one actor (``dramatiq bench.dramatiq_app``).

The actor is the Celery side's task (``bench.celery_app``) as a Dramatiq actor: in one
pipelined Redis round trip it counts its own execution (``HINCRBY`` by task id, so a task
that ran twice shows a 2) and records when it started. Dramatiq's default middleware stays
on (age limit, time limit, retries, callbacks, pipelines, shutdown notifications); no
result backend.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

BROKER_URL = os.environ.get("BATON_BENCH_DRAMATIQ_URL", "redis://127.0.0.1:6379/13")
QUEUE = "bench"

COUNTS = "bench:counts"  # task id -> times it ran
STARTS = "bench:started"  # task id -> epoch seconds when it started

broker = RedisBroker(url=BROKER_URL)
dramatiq.set_broker(broker)

_store = redis.Redis.from_url(BROKER_URL)  # redis-py resets its pool after a fork


@dramatiq.actor(actor_name="bench_noop", queue_name=QUEUE, max_retries=0)
def noop(task_id: str) -> None:
    """Do nothing, but leave proof that it ran (and when it started)."""
    started = time.time()
    pipe = _store.pipeline(transaction=False)
    pipe.hincrby(COUNTS, task_id, 1)
    pipe.hset(STARTS, task_id, repr(started))
    pipe.execute()

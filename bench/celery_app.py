"""The Celery side's app and its one task (``celery -A bench.celery_app worker``).

The task is Baton's ``worker.builtins:noop`` plus what the benchmark needs to check the
result: in one pipelined round trip it counts its own execution (``HINCRBY`` by task id,
so a task that ran twice shows a 2) and records when it started. That round trip is extra
work Baton's no-op does not do; it is small (one Redis pipeline per task).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER_URL = os.environ.get("BATON_BENCH_CELERY_URL", "redis://127.0.0.1:6379/15")
QUEUE = "bench"

COUNTS = "bench:counts"  # task id -> times it ran
STARTS = "bench:started"  # task id -> epoch seconds when it started

# The result backend (the broker's Redis database) is there for the chords of the DAG
# scenarios (fanout500, dag1000): Celery counts a chord's finished header tasks in it. The
# tasks themselves store no result (Baton's no-op returns nothing either), so a chain or a
# plain apply_async never touches the backend.
app = Celery("baton_bench", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=True,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_redirect_stdouts=False,
)

_store = redis.Redis.from_url(BROKER_URL)  # redis-py resets its pool after a fork


@app.task(name="bench.noop")
def noop(task_id: str) -> None:
    """Do nothing, but leave proof that it ran (and when it started)."""
    started = time.time()
    pipe = _store.pipeline(transaction=False)
    pipe.hincrby(COUNTS, task_id, 1)
    pipe.hset(STARTS, task_id, repr(started))
    pipe.execute()

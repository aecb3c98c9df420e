"""Count a worker's Redis round trips per task (no engine, no PostgreSQL).

A :class:`worker.runner.Worker` connects through the counting proxy of
``scripts/trigger_load.py``; the script puts no-op task messages on a tenant's stream
itself and waits for their ``finished`` events:

- ``burst``: ``--tasks`` messages at once (a backlog, as in the throughput benchmark);
- ``chain``: one message at a time, the next once the previous finished (as in a chain,
  where the worker is idle between steps and its blocking read counts too).

Usage: ``python scripts/worker_round_trips.py --redis redis://127.0.0.1:6393/2``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from urllib.parse import urlsplit

from redis.asyncio import Redis
from trigger_load import CountingProxy, _say, _with_host_port

from kernel.wire import keys
from kernel.wire.protocol import EVENT_FIELD, TASK_FIELD, TaskMessage
from kernel.wire.streams import ensure_group
from worker.executors.base import ExecutorPolicy
from worker.runner import Worker, WorkerConfig

NOOP = {"type": "python", "function": "worker.builtins:noop"}


async def _dispatch(redis: Redis, queue: str, tenant: str) -> None:
    message = TaskMessage(
        tenant_id=tenant,
        run_id=str(uuid.uuid4()),
        task_run_id=str(uuid.uuid4()),
        task_name="t",
        attempt=1,
        spec=NOOP,
        queue=queue,
    )
    await redis.xadd(keys.queue_stream(tenant, queue), {TASK_FIELD: message.to_json()})


async def _wait_finished(redis: Redis, tenant: str, count: int) -> None:
    # Blocking reads of the events stream: woken by each new event, no polling.
    last = "0-0"
    seen = 0
    while seen < count:
        reply = await redis.xread({keys.events_stream(tenant): last}, block=1000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                seen += json.loads(fields[EVENT_FIELD])["kind"] == "finished"


async def measure(url: str, mode: str, tasks: int) -> None:
    direct = Redis.from_url(url, decode_responses=True)
    rd = urlsplit(url)
    proxy = CountingProxy(rd.hostname or "127.0.0.1", rd.port or 6379)
    await proxy.start()
    proxied = Redis.from_url(_with_host_port(url, proxy.port), decode_responses=True)
    queue, tenant = f"rt-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    await ensure_group(direct, keys.queue_stream(tenant, queue), keys.WORKERS_GROUP)
    await direct.sadd(keys.queue_tenants(queue), tenant)
    config = WorkerConfig(
        queues=(queue,),
        concurrency=8,
        policy=ExecutorPolicy(python_modules=("worker.builtins",)),
        heartbeat_seconds=60,
        visibility_timeout_seconds=600,
    )
    worker = Worker(proxied, config)
    runner = asyncio.create_task(worker.run())
    await _dispatch(direct, queue, tenant)  # warm up: groups, stream list, connections
    await _wait_finished(direct, tenant, 1)
    await asyncio.sleep(0.6)
    before, began = proxy.round_trips, time.perf_counter()
    if mode == "burst":
        for _ in range(tasks):
            await _dispatch(direct, queue, tenant)
        await _wait_finished(direct, tenant, tasks + 1)
    else:
        for done in range(tasks):
            await _dispatch(direct, queue, tenant)
            await _wait_finished(direct, tenant, done + 2)
    elapsed = time.perf_counter() - began
    trips = proxy.round_trips - before
    worker.stop()
    await runner
    proxy.close()
    await direct.delete(keys.queue_stream(tenant, queue), keys.events_stream(tenant))
    await direct.srem(keys.queue_tenants(queue), tenant)
    await proxied.aclose()
    await direct.aclose()
    _say(
        f"{mode}: {tasks} tasks, {trips / tasks:.2f} Redis round trips per task, "
        f"{tasks / elapsed:.0f} tasks/s through the proxy"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=200)
    args = parser.parse_args()
    await measure(args.redis, "burst", args.tasks)
    await measure(args.redis, "chain", args.chain)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The trigger_rate scenario's load generator: ``python -m bench.loadgen SPEC OUT`` (its own
process).

It reads a JSON spec from the file SPEC (host, port, path, headers, body, connections,
step seconds, p99 limit), keeps ``connections`` HTTP/1.1 keep-alive connections open (one
per client) and writes one JSON object to the file OUT. Requests are written and
responses parsed by hand over asyncio streams on uvloop - a few tens of microseconds of
CPU per request, so the generator is not the bottleneck (it reports its own CPU share per
phase to prove it).

Method:

1. **closed loop** (``closed``): every client sends its next request as soon as the
   previous one is answered, for one step: the most the server completes with that many
   requests open, and the latency it costs.
2. **open loop, stepped** (``steps``): arrivals at a fixed rate (a fraction of the
   closed-loop rate: 30 %, 50 %, then +10 % up to 100 %), each step as long as the closed
   one; an arrival waits for a free client if all are busy, and its latency counts from
   the instant it was due, so queueing in front of the server is included. A step
   *holds* when the rate achieved is at least 97 % of the offered one, no request failed
   and p99 <= the limit. After the first step that does not hold, two bisection steps
   between the last that held and it. The sustained rate is the highest achieved rate of
   a step that held.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOLD_SHARE = 0.97  # achieved / offered for a step to hold


@dataclass
class Phase:
    kind: str  # "closed" | "open"
    offered: float  # requests/s (0 for closed)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        body = json.dumps(spec["body"]).encode()
        head = [
            f"POST {spec['path']} HTTP/1.1",
            f"Host: {spec['host']}:{spec['port']}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in spec["headers"].items()]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.spec["host"], self.spec["port"]
        )

    async def call(self) -> int:
        """Send the request, read the whole response; its status code."""
        if self.writer is None or self.reader is None or self.writer.is_closing():
            await self.connect()
        assert self.writer is not None and self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
        return status

    async def safe_call(self, phase: Phase) -> bool:
        try:
            status = await self.call()
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            phase.errors += 1
            phase.first_error = phase.first_error or f"{type(error).__name__}: {error}"
            if self.writer is not None:
                self.writer.close()
            self.writer = None
            return False
        if status >= 300:
            phase.errors += 1
            phase.first_error = phase.first_error or f"HTTP {status}"
            return False
        return True


async def closed_loop(clients: list[Client], seconds: float) -> Phase:
    phase = Phase("closed", 0.0)
    end = time.perf_counter() + seconds

    async def run(client: Client) -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            if await client.safe_call(phase):
                phase.latencies_ms.append((time.perf_counter() - began) * 1000)

    cpu, began = time.process_time(), time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    phase.seconds = time.perf_counter() - began
    phase.cpu_seconds = time.process_time() - cpu
    return phase


async def open_loop(clients: list[Client], rate: float, seconds: float) -> Phase:
    phase = Phase("open", rate)
    arrivals: asyncio.Queue[float | None] = asyncio.Queue()
    total = max(1, round(rate * seconds))

    async def run(client: Client) -> None:
        while (due := await arrivals.get()) is not None:
            if await client.safe_call(phase):
                phase.latencies_ms.append((time.perf_counter() - due) * 1000)

    cpu, began = time.process_time(), time.perf_counter()
    workers = [asyncio.create_task(run(c)) for c in clients]
    for i in range(total):
        due = began + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        arrivals.put_nowait(due)
    for _ in workers:
        arrivals.put_nowait(None)
    await asyncio.gather(*workers)
    phase.seconds = time.perf_counter() - began
    phase.cpu_seconds = time.process_time() - cpu
    return phase


def summary(phase: Phase, limit_ms: float) -> dict[str, Any]:
    done = len(phase.latencies_ms)
    achieved = done / phase.seconds if phase.seconds else 0.0
    p99 = _percentile(phase.latencies_ms, 99)
    holds = (
        phase.kind == "open"
        and phase.errors == 0
        and done > 0
        and achieved >= HOLD_SHARE * phase.offered
        and p99 <= limit_ms
    )
    return {
        "kind": phase.kind,
        "offered_per_s": round(phase.offered, 1),
        "achieved_per_s": round(achieved, 1),
        "requests": done,
        "errors": phase.errors,
        "first_error": phase.first_error,
        "p50_ms": round(_percentile(phase.latencies_ms, 50), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(max(phase.latencies_ms), 2) if done else math.nan,
        "seconds": round(phase.seconds, 2),
        "client_cpu_share": round(phase.cpu_seconds / phase.seconds, 3) if phase.seconds else 0,
        "holds": holds,
    }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    clients = [Client(spec) for _ in range(int(spec["connections"]))]
    await asyncio.gather(*(c.connect() for c in clients))
    seconds, limit = float(spec["step_seconds"]), float(spec["p99_ms"])
    warm = await closed_loop(clients, min(1.0, seconds))  # warm-up: connections, caches
    closed = summary(await closed_loop(clients, seconds), limit)
    ceiling = max(closed["achieved_per_s"], 1.0)
    steps: list[dict[str, Any]] = []
    held: float = 0.0
    failed: float | None = None
    for share in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        step = summary(await open_loop(clients, share * ceiling, seconds), limit)
        steps.append(step)
        if step["holds"]:
            held = share * ceiling
        else:
            failed = share * ceiling
            break
    if failed is not None:
        low = held
        for _ in range(2):
            rate = (low + failed) / 2
            step = summary(await open_loop(clients, rate, seconds), limit)
            steps.append(step)
            if step["holds"]:
                low = rate
            else:
                failed = rate
    for client in clients:
        if client.writer is not None:
            client.writer.close()
    phases = [closed, *steps]
    good = [s["achieved_per_s"] for s in steps if s["holds"]]
    best = max((s for s in steps if s["holds"]), key=lambda s: s["achieved_per_s"], default=None)
    return {
        "sustained_per_s": max(good) if good else 0.0,
        "sustained_p50_ms": best["p50_ms"] if best else math.nan,
        "sustained_p99_ms": best["p99_ms"] if best else math.nan,
        "closed_loop": closed,
        "steps": steps,
        "client_cpu_share_max": max(s["client_cpu_share"] for s in phases),
        # every 2xx created a row, the warm-up's too
        "requests_ok": len(warm.latencies_ms) + sum(s["requests"] for s in phases),
        "cpu_seconds_total": round(time.process_time(), 2),
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio: slower, still far from the server's cost
        pass
    result = asyncio.run(main_async(spec))
    Path(sys.argv[2]).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounded labels, tenant labels, settings, slot gauges and the metrics port.

Async tests, though they await little: the session's engine and worker keep running
between them instead of waking up all at once after a stretch of synchronous tests.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backend.core.settings import Settings
from backend.metrics import configure
from backend.metrics.samples import EngineSamples
from kernel.metrics import TENANTS, TenantLabels, track_worker, untrack_worker
from kernel.runtime.metrics import serve_metrics
from tests.metrics.helpers import value


async def test_tenant_labels_are_bounded_by_configuration() -> None:
    labels = TenantLabels()
    known = uuid.uuid4()
    labels.configure([str(known), "acme", " "])
    assert labels.label(known) == str(known)
    assert labels.label(uuid.uuid4()) == "other"
    assert labels.unresolved() == ["acme"]
    acme = uuid.uuid4()
    labels.resolve("acme", acme)
    labels.resolve("not-configured", uuid.uuid4())
    assert labels.label(acme) == "acme"
    assert labels.unresolved() == []
    assert labels.values() == sorted([str(known), "acme", "other"])


async def test_unknown_statuses_and_reasons_become_other() -> None:
    tenant_id = uuid.uuid4()  # not configured: "other"
    TENANTS.configure([])
    samples = EngineSamples()
    now = datetime.now(UTC)
    samples.attempt_finished("failed", "something new", None, now)
    samples.attempt_finished("exploded", None, now - timedelta(seconds=2), now)
    samples.run_finished("vanished")
    attempts = "baton_task_attempts_finished_total"
    before = {
        "failed": value(attempts, tenant="other", status="failed", reason="other"),
        "other": value(attempts, tenant="other", status="other", reason="none"),
        "run": value("baton_runs_finished_total", tenant="other", status="other"),
    }
    samples.record(tenant_id)
    samples.record(tenant_id)  # recorded once: the samples are cleared
    assert value(attempts, tenant="other", status="failed", reason="other") == before["failed"] + 1
    assert value(attempts, tenant="other", status="other", reason="none") == before["other"] + 1
    assert value("baton_runs_finished_total", tenant="other", status="other") == before["run"] + 1


async def test_settings_accept_a_comma_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_METRICS_TENANT_LABELS", "acme, globex")
    assert Settings(_env_file=None).metrics_tenant_labels == ["acme", "globex"]  # type: ignore[call-arg]
    monkeypatch.setenv("BATON_METRICS_TENANT_LABELS", '["acme", "initech"]')
    assert Settings(_env_file=None).metrics_tenant_labels == ["acme", "initech"]  # type: ignore[call-arg]
    monkeypatch.delenv("BATON_METRICS_TENANT_LABELS")
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.metrics_port == 0 and defaults.worker_metrics_port == 0
    assert defaults.metrics_host == "127.0.0.1" and defaults.metrics_token is None
    assert defaults.metrics_tenant_labels == []
    configure(["acme"])
    try:
        assert TENANTS.unresolved() == ["acme"]
    finally:
        configure([])


@dataclass(frozen=True)
class _Config:
    concurrency: int


@dataclass(eq=False)
class _FakeWorker:
    config: _Config
    running: dict[int, object] = field(default_factory=dict)


@pytest.fixture
def fake_worker() -> Iterator[_FakeWorker]:
    worker = _FakeWorker(_Config(concurrency=5))
    busy, idle = value("baton_worker_slots_busy"), value("baton_worker_slots_idle")
    track_worker(worker)
    yield worker
    untrack_worker(worker)
    assert value("baton_worker_slots_busy") == busy
    assert value("baton_worker_slots_idle") == idle


async def test_slot_gauges_follow_tracked_workers(fake_worker: _FakeWorker) -> None:
    busy, idle = value("baton_worker_slots_busy"), value("baton_worker_slots_idle")
    fake_worker.running.update({1: object(), 2: object()})
    assert value("baton_worker_slots_busy") == busy + 2
    assert value("baton_worker_slots_idle") == idle - 2


def _serve_metrics_on_a_free_port() -> tuple[int, Callable[[], None]]:
    """``serve_metrics`` on a port that was free a moment ago; another one if something took
    it in between (``serve_metrics`` takes a port number, not a bound socket)."""
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            return port, serve_metrics("127.0.0.1", port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("five free ports were taken before the metrics server bound them")


async def test_metrics_port_serves_the_registry(fake_worker: _FakeWorker) -> None:
    port, stop = _serve_metrics_on_a_free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(url)
    finally:
        await asyncio.to_thread(stop)
    assert response.status_code == 200
    assert "baton_worker_slots_idle" in response.text
    assert "baton_worker_heartbeats_total" in response.text
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(timeout=1) as http:
            await http.get(url)

"""The metrics port of the engine/scheduler process and of workers (docs/observability.md).

The API serves ``/metrics`` itself (``backend.metrics.http``); the other processes serve
:data:`kernel.metrics.REGISTRY` on a port of their own, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import start_http_server

from kernel.metrics import REGISTRY, TENANTS, initialise_label_values


def configure(tenant_labels: Iterable[str]) -> None:
    """Apply ``BATON_METRICS_TENANT_LABELS``: the tenants that get a label value of their own."""
    TENANTS.configure(tenant_labels)
    initialise_label_values()  # the configured tenants' series start at zero too


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Serve :data:`REGISTRY` on ``host:port`` (a thread); returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop

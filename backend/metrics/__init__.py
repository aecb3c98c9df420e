"""Prometheus metrics (docs/observability.md).

- ``registry``: every metric Baton defines, its help text and its bounded label values.
- ``samples``: engine observations, recorded after the transaction that made them commits.
- ``gather``: the engine's periodic queue depth / pending gatherer.
- ``http``: the API's instrumented, optionally token-protected ``/metrics``; metrics ports.

This package imports only prometheus_client at this level, so workers (which never touch
PostgreSQL) can use ``kernel.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable

from kernel.metrics import TENANTS, initialise_label_values


def configure(tenant_labels: Iterable[str]) -> None:
    """Apply ``BATON_METRICS_TENANT_LABELS``: the tenants that get a label value of their own."""
    TENANTS.configure(tenant_labels)
    initialise_label_values()  # the configured tenants' series start at zero too

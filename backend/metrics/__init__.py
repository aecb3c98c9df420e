"""Prometheus metrics (docs/observability.md).

- ``registry``: every metric Baton defines, its help text and its bounded label values.
- ``samples``: engine observations, recorded after the transaction that made them commits.
- ``gather``: the engine's periodic queue depth / pending gatherer.
- ``http``: the API's instrumented, optionally token-protected ``/metrics``.

The metric definitions are ``kernel.metrics``; :func:`configure` and the metrics ports are
``kernel.runtime.metrics``, which a worker installed alone uses too.
"""

from __future__ import annotations

from kernel.runtime.metrics import configure

__all__ = ["configure"]

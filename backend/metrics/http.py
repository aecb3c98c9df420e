"""Serving metrics: the API's ``/metrics`` (the metrics ports are ``kernel.runtime.metrics``).

The API uses prometheus-fastapi-instrumentator: request counts and latency histograms
labelled by route *template* (``/api/v1/runs/{run_id}``, never the raw path; a path no route
matches is ``none``), status codes grouped (``2xx``, ``4xx`` ...), ``/metrics`` itself not
instrumented. Each app gets a registry of its own for those (the instrumentator refuses to
register twice in one registry), which also exposes Baton's :data:`REGISTRY`.

When ``BATON_METRICS_TOKEN`` is set, ``/metrics`` answers 401 in Baton's error shape unless
the request carries ``Authorization: Bearer <token>`` (compared in constant time).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, Metric
from prometheus_fastapi_instrumentator import Instrumentator

from backend.core.errors import AuthenticationRequired, InvalidToken
from kernel.metrics import HTTP_BUCKETS, REGISTRY


class _Include:
    """A collector that yields another registry's metrics (so one scrape shows both)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()

    def describe(self) -> list[Metric]:
        return []  # names are checked for clashes within each registry, not across


def metrics_guard(token: str | None) -> Callable[[Request], None]:
    """A dependency that refuses requests without ``Authorization: Bearer <token>``."""
    expected = token.encode() if token else None

    def require_metrics_token(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthenticationRequired("A bearer token is required to read metrics")
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise InvalidToken("The metrics token is not valid")

    return require_metrics_token


def install_api_metrics(app: FastAPI, *, token: str | None) -> CollectorRegistry:
    """Instrument the API and expose ``GET /metrics``; returns the app's registry."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Include(REGISTRY))
    instrumentator = Instrumentator(
        should_group_status_codes=True,
        should_ignore_untemplated=False,
        should_group_untemplated=True,  # unmatched paths are handler="none": bounded
        # no in-progress gauge: the instrumentator registers it in the global registry
        should_exclude_streaming_duration=True,  # SSE streams: time to first byte
        excluded_handlers=["^/metrics$"],
        registry=registry,
    )
    instrumentator.instrument(app, latency_lowr_buckets=HTTP_BUCKETS)
    instrumentator.expose(
        app,
        endpoint="/metrics",
        include_in_schema=False,
        dependencies=[Depends(metrics_guard(token))],
    )
    return registry

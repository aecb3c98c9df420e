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
from collections import OrderedDict
from collections.abc import Callable, Iterable

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, Metric
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware

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


# How many (method, path) -> route template answers the API keeps (least recently used
# first out): a template is a pure function of the path, and finding it costs a match
# against every route of the app, before the router matches them again.
ROUTE_NAMES_KEPT = 4096


class _RememberedRouteNames(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware, remembering which route template a path is.

    It finds a request's template by matching the path against every route, on every
    request: a few per cent of a trigger's CPU with Baton's routes. The answer depends only
    on the method, the path and the root path (the routes are fixed once the app serves).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._names: OrderedDict[tuple[str, str, str], tuple[str, bool]] = OrderedDict()

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        key = (scope["method"], scope["path"], scope.get("root_path", ""))
        found = self._names.get(key)
        if found is not None:
            self._names.move_to_end(key)
            return found
        found = super()._get_handler(request)
        self._names[key] = found
        if len(self._names) > ROUTE_NAMES_KEPT:
            self._names.popitem(last=False)
        return found


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
    for middleware in app.user_middleware:  # before the stack is built (first request)
        if middleware.cls is PrometheusInstrumentatorMiddleware:
            middleware.cls = _RememberedRouteNames
    instrumentator.expose(
        app,
        endpoint="/metrics",
        include_in_schema=False,
        dependencies=[Depends(metrics_guard(token))],
    )
    return registry

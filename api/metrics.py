"""The REST service's Prometheus metrics and its ``/metrics``, ``/healthz``, ``/readyz``.

:class:`ApiStats` keeps plain ints per request (an aiohttp middleware,
:meth:`ApiStats.middleware`), read at scrape time by :class:`ApiCollector`:

- ``streamex_api_requests_total{method,endpoint,status}``: requests answered;
  ``endpoint`` the route's path template (``/api/v3/order``), ``other`` for a
  path that is no route (404), ``method`` the HTTP method (one of the routes'
  methods, ``OPTIONS``, else ``other``), ``status`` the HTTP status code;
- ``streamex_api_request_seconds{endpoint}``: histogram of the time from the
  request reaching the middleware to its response being ready;
- ``streamex_api_reconnects_total``: Redis reads and XADD pipelines (the
  embedded order entry's and the live books') that failed and were retried.

The three ops endpoints are routes of the same application
(:func:`add_ops_routes`; ``/metrics`` only with metrics enabled) and are not
counted. Everything runs on the event loop, so do scrapes: no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler as WebHandler
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.health import Health
from ops.http import PATHS, answer
from ops.metrics import LatencyHistogram

OTHER = "other"
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"})


class ApiStats:
    """Requests by (method, endpoint, status) and their durations by endpoint."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.seconds: dict[str, LatencyHistogram] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method if method in METHODS else OTHER, endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.seconds.get(endpoint)
        if histogram is None:
            histogram = self.seconds[endpoint] = LatencyHistogram()
        histogram.observe(seconds)

    @web.middleware
    async def middleware(self, request: web.Request, handler: WebHandler
                         ) -> web.StreamResponse:
        """Counts every request but the ops endpoints (outermost middleware)."""
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info.route.resource
            endpoint = OTHER if info is None else info.canonical
            if endpoint not in PATHS:
                self.observe(request.method, endpoint, status, time.perf_counter() - started)


class ApiCollector(Collector):
    """Reads :class:`ApiStats` at scrape time. O(series)."""

    def __init__(self, stats: ApiStats, reconnects: Callable[[], int]) -> None:
        self.stats = stats
        self.reconnects = reconnects

    def describe(self) -> Iterable[Metric]:
        return _families(None, None)

    def collect(self) -> Iterable[Metric]:
        return _families(self.stats, self.reconnects())


def _families(s: ApiStats | None, reconnects: int | None) -> list[Metric]:
    requests = CounterMetricFamily(
        "streamex_api_requests", "REST requests answered, by HTTP method, endpoint (route "
        "path, other when none) and status.", labels=["method", "endpoint", "status"])
    seconds = HistogramMetricFamily(
        "streamex_api_request_seconds", "Seconds to answer a REST request, by endpoint.",
        labels=["endpoint"])
    retries = CounterMetricFamily(
        "streamex_api_reconnects", "Redis reads and XADD pipelines that failed and were "
        "retried on a new connection.")
    if s is not None and reconnects is not None:
        retries.add_metric([], reconnects)
        for (method, endpoint, status), n in sorted(s.requests.items()):
            requests.add_metric([method, endpoint, status], n)
        for endpoint, h in sorted(s.seconds.items()):
            seconds.add_metric([endpoint], h.buckets(), h.total)
    return [requests, seconds, retries]


def add_ops_routes(app: web.Application, registry: CollectorRegistry | None,
                   health: Health) -> None:
    """GET ``/healthz``, ``/readyz`` and (with ``registry``) ``/metrics`` on ``app``."""
    empty = CollectorRegistry(auto_describe=True)

    async def serve(request: web.Request) -> web.StreamResponse:
        got = answer(request.path, registry if registry is not None else empty, health)
        assert got is not None
        status, content_type, body = got
        return web.Response(status=status, body=body,
                            headers={"Content-Type": content_type,
                                     "Cache-Control": "no-store"})

    paths = PATHS if registry is not None else tuple(p for p in PATHS if p != "/metrics")
    for path in paths:
        app.router.add_get(path, serve)

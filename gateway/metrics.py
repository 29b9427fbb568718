"""The gateway's Prometheus metrics: plain counters read at scrape time.

The sessions and the process keep plain ints in :class:`GatewayStats` (no
label lookup, no lock: everything runs on the event loop, scrapes too, on the
websocket port), and :class:`GatewayCollector` reads them at scrape time:

- ``streamex_gateway_connections``: open websocket connections (gauge);
- ``streamex_gateway_requests_total{method,code}``: requests answered, code
  ``ok`` or the error code, method one of the served methods else
  ``unknown``; an order-entry request counts when its XADD's reply is known;
- ``streamex_gateway_rate_limited_total{scope}``: requests refused
  ``RATE_LIMITED``, by the bucket that refused (``connection``, ``account``);
- ``streamex_gateway_order_latency_seconds``: histogram, an ``order.place``
  from its frame being handled to its first execution report being queued for
  the client's connection;
- ``streamex_gateway_messages_sent_total``: websocket messages written;
- ``streamex_gateway_slow_closes_total``: connections closed 1008 "slow
  consumer" (they read too little of what they were sent);
- ``streamex_gateway_reconnects_total``: ``:out`` reads and XADD pipelines that
  failed and were retried on a new Redis connection.

With ``[metrics] enabled = false`` the gateway keeps no stats. No I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ops.metrics import LatencyHistogram

OK = "ok"
LIMIT_SCOPES = ("connection", "account")
"""The ``scope`` label of ``streamex_gateway_rate_limited_total``: which bucket refused."""
UNKNOWN_METHOD = "unknown"
MAX_TRACKED = 100_000
"""Places waiting for their first report (and early reports waiting for their place's
order id) kept for the latency histogram; beyond, the oldest are forgotten."""


class GatewayStats:
    """The counters of one gateway process (see above)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: dict[tuple[str, str], int] = {}
        self.rate_limited = dict.fromkeys(LIMIT_SCOPES, 0)
        """Refusals RATE_LIMITED by the bucket that refused (connection, account)."""
        self.messages_sent = 0
        self.slow_closes = 0
        self.order_latency = LatencyHistogram()
        self._placed: OrderedDict[str, float] = OrderedDict()
        self._early: OrderedDict[str, float] = OrderedDict()

    def request(self, method: str, code: str, limited: str | None = None) -> None:
        """One request answered ``code`` (``ok`` or the error code); ``limited``: the
        scope (one of :data:`LIMIT_SCOPES`) of the bucket that refused it. O(1)."""
        key = (method, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        if limited is not None:
            self.rate_limited[limited] += 1

    def placed(self, order_id: str, received_at: float) -> None:
        """The XADD of a place handled at ``received_at`` (monotonic) named ``order_id``."""
        reported = self._early.pop(order_id, None)
        if reported is not None:  # its report was read before the XADD's reply
            self.order_latency.observe(max(0.0, reported - received_at))
            return
        self._placed[order_id] = received_at
        if len(self._placed) > MAX_TRACKED:
            self._placed.popitem(last=False)

    def reported(self, order_id: str, now: float) -> None:
        """A report of ``order_id`` was queued for its account's connections. O(1)."""
        received_at = self._placed.pop(order_id, None)
        if received_at is not None:
            self.order_latency.observe(max(0.0, now - received_at))
        elif order_id not in self._early:
            self._early[order_id] = now
            if len(self._early) > MAX_TRACKED:
                self._early.popitem(last=False)


class GatewayCollector(Collector):
    """Reads :class:`GatewayStats` at scrape time."""

    def __init__(self, stats: GatewayStats, reconnects: Callable[[], int]) -> None:
        self.stats = stats
        self.reconnects = reconnects

    def describe(self) -> Iterable[Metric]:
        return _gateway_families(None, None)

    def collect(self) -> Iterable[Metric]:
        return _gateway_families(self.stats, self.reconnects())


_LATENCY = "streamex_gateway_order_latency_seconds"
_LATENCY_DOC = ("Seconds from an order.place request being handled to its first execution "
                "report being queued for the client.")


def _gateway_families(s: GatewayStats | None, reconnects: int | None) -> list[Metric]:
    connections = GaugeMetricFamily("streamex_gateway_connections",
                                    "Open websocket connections.")
    requests = CounterMetricFamily(
        "streamex_gateway_requests", "Requests answered, by method and code (ok or the "
        "error code).", labels=["method", "code"])
    limited = CounterMetricFamily("streamex_gateway_rate_limited",
                                  "Requests refused RATE_LIMITED, by the limit's scope "
                                  "(connection or account).", labels=["scope"])
    sent = CounterMetricFamily("streamex_gateway_messages_sent",
                               "Websocket messages sent to clients.")
    slow = CounterMetricFamily("streamex_gateway_slow_closes",
                               "Connections closed 1008 slow consumer: they did not read "
                               "what they were sent.")
    retries = CounterMetricFamily("streamex_gateway_reconnects",
                                  "Redis reads and XADD pipelines that failed and were "
                                  "retried on a new connection.")
    if s is None or reconnects is None:
        return [connections, requests, limited, HistogramMetricFamily(_LATENCY, _LATENCY_DOC),
                sent, slow, retries]
    retries.add_metric([], reconnects)
    connections.add_metric([], s.connections)
    for (method, code), n in sorted(s.requests.items()):
        requests.add_metric([method, code], n)
    for scope, n in s.rate_limited.items():
        limited.add_metric([scope], n)
    sent.add_metric([], s.messages_sent)
    slow.add_metric([], s.slow_closes)
    return [connections, requests, limited, s.order_latency.family(_LATENCY, _LATENCY_DOC),
            sent, slow, retries]

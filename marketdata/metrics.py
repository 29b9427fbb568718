"""The market-data service's Prometheus metrics, read at scrape time.

:class:`MarketDataCollector` reads the plain counters and the subscription
sets of ``marketdata.server.FeedServer`` (scrapes are served on the
service's own websocket port, on the event loop, so nothing needs a lock):

- ``streamex_marketdata_connections``: open websocket connections (gauge);
- ``streamex_marketdata_subscribers{channel}``: subscriptions per channel
  (``book``, ``trades``, ``ticker``, ``candles``; a connection counts once per
  market and, for candles, per interval) (gauge);
- ``streamex_marketdata_requests_total{method,code}``: requests answered,
  ``code`` ``ok`` or the error code, ``method`` ``unknown`` for a frame that
  did not parse;
- ``streamex_marketdata_slow_snapshots_total``: slow consumers resynced with
  fresh snapshots;
- ``streamex_marketdata_slow_closes_total``: slow consumers closed (1008);
- ``streamex_marketdata_messages_sent_total``: websocket messages written;
- ``streamex_marketdata_reconnects_total``: stream reads retried after a Redis failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from marketdata.server import FeedServer

CHANNELS = ("book", "trades", "ticker", "candles")
OK = "ok"
UNKNOWN_METHOD = "unknown"
"""The ``method`` label of a frame that names no served method."""


class MarketDataCollector(Collector):
    """Reads a :class:`~marketdata.server.FeedServer` at scrape time. O(markets +
    connections)."""

    def __init__(self, server: FeedServer, reconnects: Callable[[], int]) -> None:
        self.server = server
        self.reconnects = reconnects

    def describe(self) -> Iterable[Metric]:
        return _families(None, None)

    def collect(self) -> Iterable[Metric]:
        return _families(self.server, self.reconnects())


def _families(server: FeedServer | None, reconnects: int | None) -> list[Metric]:
    connections = GaugeMetricFamily("streamex_marketdata_connections",
                                    "Open websocket connections.")
    subscribers = GaugeMetricFamily("streamex_marketdata_subscribers",
                                    "Subscriptions by channel.", labels=["channel"])
    requests = CounterMetricFamily(
        "streamex_marketdata_requests", "Requests answered, by method and code (ok or the "
        "error code).", labels=["method", "code"])
    snapshots = CounterMetricFamily(
        "streamex_marketdata_slow_snapshots", "Slow consumers resynced with fresh snapshots.")
    closes = CounterMetricFamily("streamex_marketdata_slow_closes",
                                 "Slow consumers closed (1008).")
    sent = CounterMetricFamily("streamex_marketdata_messages_sent",
                               "Websocket messages sent to subscribers.")
    retries = CounterMetricFamily("streamex_marketdata_reconnects",
                                  "Stream reads that failed and were retried on a new "
                                  "Redis connection.")
    families: list[Metric] = [connections, subscribers, requests, snapshots, closes, sent,
                              retries]
    if server is None or reconnects is None:
        return families
    retries.add_metric([], reconnects)
    connections.add_metric([], len(server.connections))
    counts = dict.fromkeys(CHANNELS, 0)
    for subs in server.subs.values():
        counts["book"] += sum(len(conns) for conns in subs.books.values())
        counts["trades"] += len(subs.trades)
        counts["ticker"] += len(subs.tickers)
        counts["candles"] += sum(len(conns) for conns in subs.candles.values())
    for channel, n in counts.items():
        subscribers.add_metric([channel], n)
    for (method, code), n in sorted(server.request_counts.items()):
        requests.add_metric([method, code], n)
    snapshots.add_metric([], server.resyncs)
    closes.add_metric([], server.slow_closes)
    sent.add_metric([], server.messages_sent())
    return families

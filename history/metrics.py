"""``streamex history``'s Prometheus metrics.

Label ``stream`` is a stream's name in the database: a market symbol or
``acct-K`` (a bounded set).

- ``streamex_history_write_seconds`` (histogram): one ``Store.write`` (one
  transaction), observed once per batch.
- Read at scrape time by :class:`HistoryCollector` from plain attributes of
  the service, so the loop pays nothing for them:
  ``streamex_history_entries_total{stream}`` (entries written),
  ``streamex_history_rows_total``, ``streamex_history_batches_total``,
  ``streamex_history_gaps_total``, ``streamex_history_conflicts_total``,
  ``streamex_history_errors_total`` (database failures),
  ``streamex_history_reconnects_total`` (Redis reads retried),
  ``streamex_history_lag_seconds{stream}``: the age of the oldest entry read
  from the stream and not yet written (its id's milliseconds against the
  wall clock; 0 when everything read is written), and
  ``streamex_history_lag_entries{stream}``: how many entries are read and
  not yet written (at most a few reads' worth: the readers stop reading when
  the writer is behind, so the seconds tell how far behind it is).

No I/O here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.metrics import LATENCY_BUCKETS

STREAM = ("stream",)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One stream as the service knows it at a moment."""

    name: str
    written: int
    """Entries written to the database since the process started."""
    unwritten: int
    """Entries read and not yet written."""
    oldest_ms: int | None
    """Id milliseconds of the oldest of those (None: none)."""


class HistorySource(Protocol):
    """What the collector reads: the service (``history.service.HistoryService``)."""

    def totals(self) -> Mapping[str, int]:
        """``rows``, ``batches``, ``gaps``, ``conflicts``, ``errors``, ``reconnects``."""

    def stream_status(self) -> list[StreamStatus]:
        """Every followed stream; safe to call from another thread."""


class HistoryMetrics:
    """The history process's metrics on ``registry``; :meth:`attach` the service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.write_seconds = Histogram(
            "streamex_history_write_seconds", "Time of one database write (one transaction).",
            registry=registry, buckets=LATENCY_BUCKETS)
        self.collector = HistoryCollector()

    def attach(self, source: HistorySource) -> None:
        """Register the scrape-time collector reading ``source``. Once."""
        self.collector.source = source
        self.registry.register(self.collector)


_TOTALS = {
    "rows": "Rows written (positions excluded).",
    "batches": "Database writes committed.",
    "gaps": "Gaps stored: entries trimmed by retention before they were read.",
    "conflicts": "Writes refused because another writer moved a position (then reloaded).",
    "errors": "Database failures (retried).",
    "reconnects": "Redis reads retried after a failure.",
}


class HistoryCollector(Collector):
    """The scrape-time part of :class:`HistoryMetrics`."""

    def __init__(self) -> None:
        self.source: HistorySource | None = None

    def describe(self) -> Iterable[Metric]:
        return self._collect(None)

    def collect(self) -> Iterable[Metric]:
        return self._collect(self.source)

    @staticmethod
    def _collect(source: HistorySource | None) -> list[Metric]:
        entries = CounterMetricFamily("streamex_history_entries",
                                      "Stream entries written to the database.", labels=STREAM)
        lag_s = GaugeMetricFamily(
            "streamex_history_lag_seconds", "Age of the oldest entry read from the stream "
            "and not yet written (0 when none).", labels=STREAM)
        lag_n = GaugeMetricFamily(
            "streamex_history_lag_entries", "Entries read from the stream and not yet "
            "written.", labels=STREAM)
        totals = {name: CounterMetricFamily(f"streamex_history_{name}", doc)
                  for name, doc in _TOTALS.items()}
        if source is not None:
            now_ms = time.time() * 1000
            for s in source.stream_status():
                entries.add_metric([s.name], s.written)
                lag_n.add_metric([s.name], s.unwritten)
                lag_s.add_metric([s.name], 0.0 if s.oldest_ms is None
                                 else max(0.0, (now_ms - s.oldest_ms) / 1000))
            values = source.totals()
            for name, family in totals.items():
                family.add_metric([], values.get(name, 0))
        return [entries, *totals.values(), lag_s, lag_n]


__all__ = ["HistoryCollector", "HistoryMetrics", "HistorySource", "StreamStatus"]

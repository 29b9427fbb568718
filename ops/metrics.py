"""A process's Prometheus registry and the buckets every service's histograms share.

Each service builds its metrics (counters, gauges, histograms of
``prometheus_client``) on the registry :func:`process_registry` returns,
never on the library's global one, so several services can live in one
test process. Names follow Prometheus' conventions: ``streamex_`` prefix,
``_total`` for counters, base units (``_seconds``, ``_bytes``); labels are
bounded sets (a market or risk shard, a method, an error code), never an
order or account id. No I/O; an update costs well under a microsecond.
"""

from __future__ import annotations

import bisect

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import HistogramMetricFamily

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds, for commit, request and end-to-end latencies (50 µs .. 10 s)."""
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Commands or entries per batch."""


def process_registry() -> CollectorRegistry:
    """A fresh registry with the process's CPU, memory, open files, GC and Python info."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its Content-Type. O(series)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class LatencyHistogram:
    """A histogram of seconds over :data:`LATENCY_BUCKETS` kept as plain counts, exported
    at scrape time (:meth:`family`): a hot path's observe is one bisect and two adds, no
    lock. O(log buckets)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(upper bound, count)`` pairs, ``+Inf`` last (the exposition's)."""
        cumulative = 0
        out: list[tuple[str, float]] = []
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += n
            out.append((bound, cumulative))
        return out

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        """The histogram as an unlabelled metric family named ``name``."""
        f = HistogramMetricFamily(name, doc)
        f.add_metric([], self.buckets(), self.total)
        return f

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

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

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

"""Garbage-collector settings for the long-running services (engine, gateway, market data).

The services allocate many short-lived containers per order and create
almost no reference cycles, so CPython's defaults cost them twice: a young
collection every 700 allocations (~4% of the CPU), and every few seconds a
full collection that walks every object alive, including the ~10^5 that
imports and start-up created. Under load that full pass stopped the gateway
for up to 22 ms at a time, which showed as its p99.

:func:`tune_gc` is process-wide; call it once the service has started.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (net of frees) between two young-generation collections."""


def tune_gc() -> None:
    """Freeze what start-up allocated (never scanned again) and collect less often.

    Cost: one full collection now (a few ms). Cycles created later are still
    collected: young ones every :data:`YOUNG_THRESHOLD` allocations, old ones
    when CPython's own ratio of new to long-lived objects calls for it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)

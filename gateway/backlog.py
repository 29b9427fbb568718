"""How many commands wait unapplied in each market's input stream, refreshed periodically.

Admission control reads :meth:`BacklogMonitor.backlog` (O(1), no I/O) before
accepting new orders; one task (:meth:`BacklogMonitor.run`) re-measures every
``refresh_s`` with one pipeline for all markets (a redis-py cluster pipeline
on a cluster: one per node). The measurement is the
engine group's ``lag`` (entries not yet delivered) plus its ``pending``
(delivered, not yet acknowledged) from ``XINFO GROUPS``; before any engine
created the group, or when Redis cannot compute the lag, it is ``XLEN``
(an over-estimate). Between refreshes, the entries this gateway added since
the last measurement are counted on top, so a burst is seen at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from contract.keys import ENGINE_GROUP, in_stream
from redisio.client import AnyRedis

log = logging.getLogger(__name__)


class BacklogMonitor:
    """Estimated unapplied entries per market: last measurement + entries added since."""

    def __init__(self, redis: AnyRedis, symbols: Iterable[str],
                 refresh_s: float = 0.1) -> None:
        self._redis = redis
        self._symbols = list(symbols)
        self._stream_symbol = {in_stream(s): s for s in self._symbols}
        self._refresh_s = refresh_s
        self._measured = dict.fromkeys(self._symbols, 0)
        self._added = dict.fromkeys(self._symbols, 0)

    def backlog(self, symbol: str) -> int:
        """Current estimate for ``symbol``. O(1)."""
        return self._measured[symbol] + self._added[symbol]

    def added(self, stream: str, n: int) -> None:
        """Count ``n`` entries this process just appended to ``stream`` (an ``:in`` key)."""
        symbol = self._stream_symbol.get(stream)
        if symbol is not None:
            self._added[symbol] += n

    async def refresh(self) -> None:
        """Measure every market now (one pipeline; on a cluster redis-py sends one per
        node); raises the Redis error if it fails, after updating the markets measured."""
        pipe = self._redis.pipeline(transaction=False)
        for symbol in self._symbols:
            key = in_stream(symbol)
            pipe.xinfo_groups(key)
            pipe.xlen(key)
        added_before = dict(self._added)
        results = await pipe.execute(raise_on_error=False)
        failed: Exception | None = None
        for i, symbol in enumerate(self._symbols):
            groups, length = results[2 * i], results[2 * i + 1]
            if isinstance(length, Exception):
                failed = failed or length  # that market's node: keep its estimate growing
                continue
            self._measured[symbol] = _unapplied(groups, int(length))
            # Entries added while the measurement was in flight may be counted
            # twice until the next refresh: an over-estimate, never an under-estimate.
            self._added[symbol] -= added_before[symbol]
        if failed is not None:
            raise failed

    async def run(self) -> None:
        """Refresh every ``refresh_s`` until cancelled; failures are logged and retried."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("backlog refresh failed: %r", exc)
            await asyncio.sleep(self._refresh_s)


def _unapplied(groups: Any, length: int) -> int:
    """lag + pending of the engine group, else the stream length."""
    if isinstance(groups, list):
        for group in groups:
            name = group.get("name")
            if name in (ENGINE_GROUP, ENGINE_GROUP.encode()):
                lag = group.get("lag")
                pending = group.get("pending") or 0
                if lag is None:
                    return length
                return int(lag) + int(pending)
    return length

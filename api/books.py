"""The live books of the REST service: one market-data feed per market, followed from Redis.

Each market's :class:`~marketdata.feed.MarketFeed` is driven by a
:class:`~marketdata.reader.MarketReader` (engine snapshot, then the market's
``:out`` stream), exactly as the market-data service does, and publishes
nothing: REST reads the state when asked. What the service reads: the L2
book (``depth``, best bid and ask), the last trade and the market's event
``seq`` (Binance's ``lastUpdateId``). Costs: the feed's per entry; reads are
O(levels asked). A read first waits (bounded) for the feed to reach what the
order router has read (:meth:`LiveBooks.fresh`), so the book a client sees
after its order's answer has the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from contract.events import Event
from contract.market import Market
from contract.snapshot import Snapshot
from marketdata.feed import Batch, MarketFeed
from marketdata.reader import MarketReader
from redisio.topology import Topology

log = logging.getLogger("streamex.api")

START_TIMEOUT_S = 30.0
FRESH_WAIT_S = 0.5
"""The longest a book read waits for its reader to reach the order router's position."""
READ_INTERVAL_S = 0.05
"""Readers coalesce what arrives within this long once caught up (``redisio.tail``); a
book read that needs newer events wakes its reader at once (:meth:`LiveBooks.fresh`)."""


def _publish_nothing(feed: MarketFeed, batch: Batch) -> None:
    """No subscribers: the state is read on request."""


class _Feed(MarketFeed):
    """A feed that wakes the readers waiting for it after each entry it applies."""

    def __init__(self, market: Market) -> None:
        # No book windows and no candles: nothing is published, and REST reads its
        # candles and 24-hour statistics from the history database.
        super().__init__(market, depths=(), intervals={})
        self.advanced = asyncio.Event()

    def apply(self, events: list[Event]) -> Batch:
        batch = super().apply(events)
        self.advanced.set()
        return batch

    def restore(self, snap: Snapshot, last_trade: tuple[int, int] | None) -> Batch:
        batch = super().restore(snap, last_trade)
        self.advanced.set()
        return batch


class LiveBooks:
    """Feeds of ``markets`` by symbol; :meth:`start` loads them, :meth:`close` stops them."""

    def __init__(self, markets: Iterable[Market]) -> None:
        self.feeds = {m.symbol: _Feed(m) for m in markets}
        self.readers: list[MarketReader] = []
        self._readers: dict[str, MarketReader] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, topology: Topology) -> None:
        """Start every reader and wait until each loaded its snapshot (bounded by
        :data:`START_TIMEOUT_S`); raises a reader's start-up error."""
        self.readers = [MarketReader(topology, feed, _publish_nothing,
                                     min_interval_s=READ_INTERVAL_S)
                        for feed in self.feeds.values()]
        self._readers = {r.feed.symbol: r for r in self.readers}
        self.tasks = [asyncio.create_task(r.run(), name=f"api reader {r.feed.symbol}")
                      for r in self.readers]
        async with asyncio.timeout(START_TIMEOUT_S):
            for reader, task in zip(self.readers, self.tasks, strict=True):
                ready = asyncio.create_task(reader.ready.wait())
                done, _ = await asyncio.wait({ready, task},
                                             return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    ready.cancel()
                    task.result()  # raises the reader's error
                    raise RuntimeError(f"{reader.feed.symbol}: reader stopped at start-up")

    def feed(self, symbol: str) -> MarketFeed:
        return self.feeds[symbol]

    async def fresh(self, symbol: str, seq: int | None,
                    timeout_s: float = FRESH_WAIT_S) -> MarketFeed:
        """The feed of ``symbol`` once it has applied event ``seq`` (what the order router
        has read: a book answered after an order's answer shows the order), waiting at most
        ``timeout_s``; a reader follows the same stream, so it is rarely behind. O(1) when
        it is not."""
        feed = self.feeds[symbol]
        if seq is None or feed.seq >= seq:
            return feed
        self._readers[symbol].wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while feed.seq < seq:
                    feed.advanced.clear()
                    await feed.advanced.wait()
        return feed

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []

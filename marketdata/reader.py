"""Follow one market's event stream from Redis into its :class:`MarketFeed`.

Start: load the engine snapshot (``sx:{SYM}:snap``) if there is one, find the
last trade at or before it by scanning ``sx:{SYM}:out`` backwards a bounded
distance, then ``XREAD BLOCK`` from the snapshot's ``last_out_id`` (``0-0``
without a snapshot) and hand every entry's batch to ``publish``. When the
events do not follow on (the stream was trimmed past the feed's position), the
feed restores a newer snapshot and carries on; until one exists it waits.

The snapshot, the backward scan and the stream are all read on the reader's
own connection to the node that serves the market (``redisio.topology``:
the server, a cluster's primary for the market's slot, or a replica of it
with replica reads, ``durability = "replicated"``). When that node fails,
hangs or no longer serves the market (a failover), the slot map is reloaded
and the reader reconnects where it says, retrying with a growing delay (up
to :data:`RETRY_S`) from the same position; subscribers just see no
messages meanwhile.

The reader holds nothing that the snapshot and the stream cannot rebuild, so
any number of feed processes can follow the same market.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.events import Trade
from contract.keys import out_stream, snap_key
from contract.snapshot import Snapshot, decode_snapshot
from contract.streams import events_of
from marketdata.feed import Batch, MarketFeed, SeqGap
from redisio.tail import StreamTail
from redisio.topology import Node, Topology

log = logging.getLogger("streamex.marketdata")

READ_COUNT = 1000
BLOCK_MS = 1000
LAST_TRADE_SCAN_ENTRIES = 2000
"""How far back (``:out`` entries) the start-up looks for the last trade."""
GAP_RETRY_S = 0.5
RETRY_S = 1.0
"""Longest delay between two attempts to reach Redis (the first is after FIRST_RETRY_S)."""
FIRST_RETRY_S = 0.05

Publish = Callable[[MarketFeed, Batch], None]
Entries = list[tuple[bytes, list[bytes]]]


class MarketReader:
    """Drives one :class:`MarketFeed` from Redis; run :meth:`run` as a task.

    ``publish(feed, batch)`` is called synchronously for every applied entry
    (and for snapshot reloads) and must not block. :attr:`ready` is set once
    the start-up snapshot is loaded and reading has begun.
    """

    def __init__(self, client: Topology | aioredis.Redis, feed: MarketFeed,
                 publish: Publish) -> None:
        self.topology = client if isinstance(client, Topology) else Topology.of_client(client)
        self.feed = feed
        self.publish = publish
        self.position = "0-0"
        self.ready = asyncio.Event()
        self.gaps = 0
        self._stream = out_stream(feed.symbol).encode()
        self._tail = StreamTail(self.topology, READ_COUNT)
        self._snap_key = snap_key(feed.symbol)
        self._delay = FIRST_RETRY_S

    @property
    def node(self) -> Node | None:
        """The node the market is read from now (None before the first read)."""
        return self._tail.node

    async def run(self) -> None:
        """Load the start-up snapshot, then follow the stream until cancelled.

        A lost Redis connection (or a failover) is retried from the same
        position, after a delay doubling from :data:`FIRST_RETRY_S` to
        :data:`RETRY_S`; subscribers just see no messages meanwhile.
        """
        try:
            while True:
                try:
                    await self._follow()
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    log.warning("%s: redis: %s; retrying in %.2f s", self.feed.symbol, exc,
                                self._delay)
                    await asyncio.sleep(self._delay)
                    self._delay = min(self._delay * 2, RETRY_S)
        finally:
            await self._tail.close()

    async def _follow(self) -> None:
        if not self.ready.is_set():
            await self._restore(newer_than=-1)
            self.ready.set()
        while True:
            reply = await self._tail.read({self._stream: self.position.encode()}, BLOCK_MS)
            self._delay = FIRST_RETRY_S
            for _key, entries in reply:
                for entry_id, fields in entries:
                    try:
                        batch = self.feed.apply(events_of(fields))
                    except SeqGap as gap:
                        self.gaps += 1
                        log.warning("%s: %s at %s (stream trimmed past this feed); "
                                    "restoring the engine snapshot", self.feed.symbol, gap,
                                    entry_id.decode())
                        trade_id = self.feed.trade_id
                        await self._restore(newer_than=self.feed.seq)
                        if self.feed.trade_id > trade_id:
                            log.warning("%s: trades %d..%d are gone from the stream; trades "
                                        "subscribers see trade_id jump", self.feed.symbol,
                                        trade_id + 1, self.feed.trade_id)
                        break
                    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
                        log.error("%s: undecodable :out entry %s skipped", self.feed.symbol,
                                  entry_id.decode())
                        self.position = entry_id.decode()
                        continue
                    self.position = entry_id.decode()
                    if not batch.empty:
                        self.publish(self.feed, batch)

    async def _restore(self, newer_than: int) -> None:
        """Load the snapshot (one with ``seq > newer_than``; wait for it) and publish the change.

        At start-up (``newer_than=-1``) a missing snapshot means: start at ``0-0``.
        """
        while True:
            raw = cast(bytes | None, await self._call("GET", self._snap_key))
            snap = None if raw is None else decode_snapshot(raw)
            if snap is None and newer_than < 0:
                self.position = "0-0"
                return
            if snap is not None and snap.seq > newer_than:
                break
            await asyncio.sleep(GAP_RETRY_S)
        last_trade = await self._last_trade(snap)
        batch = self.feed.restore(snap, last_trade)
        self.position = snap.last_out_id
        if not batch.empty:
            self.publish(self.feed, batch)

    async def _last_trade(self, snap: Snapshot) -> tuple[int, int] | None:
        """Price and qty of the last trade at or before ``snap``, if still in the stream."""
        if snap.trade_id == 0:
            return None
        end = snap.last_out_id
        scanned = 0
        while scanned < LAST_TRADE_SCAN_ENTRIES:
            entries = cast(Entries, await self._call("XREVRANGE", self._stream, end, "-",
                                                     "COUNT", 100))
            if not entries:
                return None
            for entry_id, fields in entries:
                for event in reversed(events_of(fields)):
                    if type(event) is Trade and event.seq <= snap.seq:
                        return (event.price, event.qty)
                end = "(" + entry_id.decode()
            scanned += len(entries)
        return None

    async def _call(self, *args: Any) -> Any:
        """One command on the node (and connection) the stream is read from."""
        return await self._tail.call(self._stream, *args)

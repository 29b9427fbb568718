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

With a history database (``history``, a ``store.db.Store``), the start-up
then seeds the feed's candles, 24-hour window and last trades from it
(:mod:`marketdata.seed`, in a thread) and counts the trades the engine
snapshot covers that the database has not written yet, read from ``:out``
between the database's position and the snapshot's (``XRANGE``); what
retention trimmed from there is logged as a hole in the candles. From then
on only trades above the database's last trade id are counted, so none is
counted twice. A database that cannot be read, or that has read the stream
past its end (it belongs to another run of the exchange: Redis was reset),
is logged and the history starts empty at the snapshot.

The reader holds nothing that the snapshot, the stream and the database
cannot rebuild, so any number of feed processes can follow the same market.
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
from contract.ids import parse_id
from contract.keys import out_stream, snap_key
from contract.snapshot import Snapshot, decode_snapshot
from contract.streams import events_of
from marketdata.feed import Batch, MarketFeed, SeqGap
from marketdata.seed import HistorySeed, read_seed
from redisio.tail import StreamTail
from redisio.topology import Node, Topology
from store.db import StoreError
from store.queries import Queries

log = logging.getLogger("streamex.marketdata")

READ_COUNT = 1000
BLOCK_MS = 1000
LAST_TRADE_SCAN_ENTRIES = 2000
"""How far back (``:out`` entries) the start-up looks for the last trade."""
GAP_RETRY_S = 0.5
RETRY_S = 1.0
"""Longest delay between two attempts to reach Redis (the first is after FIRST_RETRY_S)."""
FIRST_RETRY_S = 0.05
CATCH_UP_COUNT = 1000
"""``:out`` entries per XRANGE while counting the trades the database lacks."""

Publish = Callable[[MarketFeed, Batch], None]
Entries = list[tuple[bytes, list[bytes]]]


class MarketReader:
    """Drives one :class:`MarketFeed` from Redis; run :meth:`run` as a task.

    ``publish(feed, batch)`` is called synchronously for every applied entry
    (and for snapshot reloads) and must not block. :attr:`ready` is set once
    the start-up snapshot is loaded and reading has begun.
    """

    def __init__(self, client: Topology | aioredis.Redis, feed: MarketFeed,
                 publish: Publish, history: Queries | None = None, *,
                 min_interval_s: float = 0.0) -> None:
        """``history``: the database to seed candles and trades from (None: start empty).
        ``min_interval_s``: coalesce reads once caught up (``redisio.tail``)."""
        self.topology = client if isinstance(client, Topology) else Topology.of_client(client)
        self.feed = feed
        self.publish = publish
        self.history = history
        self.position = "0-0"
        self.ready = asyncio.Event()
        self.failure: str | None = None
        """The Redis error of the last failed read (None: the last read worked): the
        service's ``/readyz`` reports it."""
        self.gaps = 0
        self.reconnects = 0
        """Reads that failed (Redis lost, timed out) and were retried on a new connection."""
        self.seeded: HistorySeed | None = None
        """What the database gave at start-up (None: no database, or it failed)."""
        self.caught_up = 0
        """Trades counted at start-up from ``:out`` because the database lacked them."""
        self._stream = out_stream(feed.symbol).encode()
        self._tail = StreamTail(self.topology, READ_COUNT, min_interval_s=min_interval_s)
        self._snap_key = snap_key(feed.symbol)
        self._delay = FIRST_RETRY_S

    def wake(self) -> None:
        """Read now if the reader is pausing between reads (``min_interval_s``). O(1)."""
        self._tail.wake()

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
                    self.failure = repr(exc)
                    self.reconnects += 1
                    log.warning("%s: redis: %s; retrying in %.2f s", self.feed.symbol, exc,
                                self._delay)
                    await asyncio.sleep(self._delay)
                    self._delay = min(self._delay * 2, RETRY_S)
        finally:
            await self._tail.close()

    async def _follow(self) -> None:
        if not self.ready.is_set():
            await self._restore(newer_than=-1)
            if self.history is not None and self.seeded is None:
                await self._seed(self.history)
            self.ready.set()
        while True:
            reply = await self._tail.read({self._stream: self.position.encode()}, BLOCK_MS)
            self._delay = FIRST_RETRY_S
            self.failure = None
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

    async def _seed(self, history: Queries) -> None:
        """Seed the feed's history from the database, then count from ``:out`` the trades
        between the database's position and the snapshot's (module docstring)."""
        symbol = self.feed.symbol
        try:
            seed = await asyncio.to_thread(read_seed, history, symbol)
        except (StoreError, RuntimeError, OSError) as exc:
            log.error("%s: history database unreadable (%s): candles and trades start empty "
                      "at the engine snapshot", symbol, exc)
            return
        if seed.position is not None and not await self._stream_reaches(seed.position[0]):
            log.error("%s: the history database has read the stream up to %s, beyond its "
                      "end: it is from another run of the exchange; candles and trades "
                      "start empty at the engine snapshot", symbol, seed.position[0])
            return
        self.seeded = seed
        self.feed.seed(seed.candles, seed.minutes, seed.trades, seed.last_trade_id)
        behind = self.feed.trade_id - seed.last_trade_id
        log.info("%s: history seeded: %d trades, last trade %d; engine snapshot at trade %d",
                 symbol, len(seed.trades), seed.last_trade_id, self.feed.trade_id)
        if behind > 0:
            await self._catch_up(seed)

    async def _stream_reaches(self, entry_id: str) -> bool:
        """Whether ``:out`` holds (or held) ``entry_id``: its last entry is not older. O(1)."""
        last = cast(Entries, await self._call("XREVRANGE", self._stream, "+", "-", "COUNT", 1))
        return bool(last) and parse_id(last[0][0]) >= parse_id(entry_id)

    async def _catch_up(self, seed: HistorySeed) -> None:
        """Count the trades after ``seed`` up to the engine snapshot, from ``:out``. Cost:
        one XRANGE per :data:`CATCH_UP_COUNT` entries between the two positions."""
        feed = self.feed
        first = feed.history_trade_id + 1
        last = feed.trade_id
        start = "-" if seed.position is None else "(" + seed.position[0]
        found: int | None = None
        while True:
            entries = cast(Entries, await self._call("XRANGE", self._stream, start,
                                                     self.position, "COUNT", CATCH_UP_COUNT))
            if not entries:
                break
            trades = [e for _, fields in entries for e in events_of(fields)
                      if type(e) is Trade and feed.history_trade_id < e.trade_id <= last]
            if trades and found is None:
                found = trades[0].trade_id
            self.caught_up += feed.catch_up(trades)
            start = "(" + entries[-1][0].decode()
        if found is None or found > first:
            log.warning("%s: trades %d..%d are neither in the history database nor in the "
                        "stream (trimmed): candles and 24 h statistics miss them",
                        feed.symbol, first, last if found is None else found - 1)
        elif feed.history_trade_id < last:
            log.warning("%s: trades %d..%d of the engine snapshot were not found in the "
                        "stream: candles miss them", feed.symbol, feed.history_trade_id + 1,
                        last)
        log.info("%s: %d trades counted from the stream up to the engine snapshot",
                 feed.symbol, self.caught_up)

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

"""Follows every market's event stream: keeps the open-orders view and routes reports.

:meth:`ExecutionRouter.load` rebuilds the view from each market's snapshot and
the ``:out`` entries after it (call it before serving); :meth:`ExecutionRouter.run`
then follows ``:out`` with blocking ``XREAD`` (on connections of its own, see
:class:`~redisio.tail.StreamTail`): one per group of streams that one command
may cover (``Topology.groups``: all markets on a single server, each slot's in
a cluster), each in a task of its own with its own positions, so a failover
holds up only the markets of the failed node. For every ``Report`` and
``CancelRejected`` it updates the view and hands the encoded ``executions``
push to ``deliver(account, frame)``, which sends it to that account's
connections only (nothing is encoded when ``wanted(account)`` is False: the
account has no connection here). Cost per event: one decode (shared by the
whole entry), one format and one encode, whatever the number of connections.

An ``observer`` (the REST service's, which answers a request once the
engine's reports of it are read) is called once per entry after that, with
the stream, the entry id and its events.

Events whose ``seq`` the router already handled for that market are skipped:
after a failover with asynchronous replication, an engine may publish events
again under seqs that were already routed (the writes that carried them were
lost); clients get no second report. An entry starting at seq 1 starts
the market's history anew (Redis restarted empty) and is never skipped.

Under the risk stage (``risk_shards`` > 0) the router also follows every risk
shard's ``sx:{acct-K}:out`` on the same tails (same positions, same seq
dedup per shard), after loading each shard's snapshot into the balances
view: a ``Balance`` updates the view and goes to the account's connections
as a ``balances`` push; a ``MarketAnswer`` (an order the risk stage refused,
``INSUFFICIENT_FUNDS``) goes to them as that market's execution report would,
with the exec id ``"acct-<K>:<seq>"`` (``gateway.reports.risk_exec_id``).
With replica reads (``durability =
"replicated"``) the snapshot and ``:out`` are read from a replica of each
market's primary, so nothing is reported that a failover could take back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis

from contract.events import CancelRejected, Event, InputRejected, Report
from contract.keys import out_stream, snap_key
from contract.market import Market
from contract.risk import (
    Balance,
    MarketAnswer,
    decode_risk_events,
    decode_risk_snapshot,
    risk_keys,
)
from contract.snapshot import decode_snapshot
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD, events_of, field_of
from gateway.balances_view import BalancesView
from gateway.orders_view import OpenOrdersView
from gateway.reports import (
    balance_frame,
    cancel_rejected_of,
    push_frame,
    report_of,
    risk_exec_id,
)
from redisio.tail import StreamTail
from redisio.topology import Topology, TopologyError

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], None]
Observer = Callable[[bytes, bytes, str, list[Event]], None]
"""``observer(stream key, entry id, symbol, events)``: called once per ``:out`` entry read
(after the view and the pushes), with the events of market ``symbol`` it holds; for a risk
shard's entry once per answer it gives on a market's behalf (``[answer.event]``)."""
T = TypeVar("T")


BLOCK_MS = 1000
"""XREAD BLOCK of the :out reader: the longest it waits for new events."""
START_RETRY_S = 10.0
"""How long :meth:`ExecutionRouter.load` waits for the slot map to name a node to read."""
FIRST_SEQ = 1
"""The seq of a market's first event."""
CAUGHT_UP_WAIT_S = 0.5
"""The longest :meth:`ExecutionRouter.caught_up` waits for a paused reader's read."""


class _Group:
    """Streams read by one XREAD, their positions and the tail reading them."""

    __slots__ = ("tail", "positions", "reads", "read_done")

    def __init__(self, tail: StreamTail, keys: list[bytes]) -> None:
        self.tail = tail
        self.positions: dict[bytes, bytes] = dict.fromkeys(keys, b"0-0")
        self.reads = 0
        """Reads handled so far; ``read_done`` is set after each."""
        self.read_done = asyncio.Event()


class ExecutionRouter:
    """The reader of all markets' ``:out`` streams of one gateway process."""

    def __init__(self, redis: Topology | aioredis.Redis, markets: Iterable[Market],
                 view: OpenOrdersView, deliver: Deliver, wanted: Callable[[str], bool],
                 block_ms: int = BLOCK_MS, count: int = 500, *, risk_shards: int = 0,
                 balances: BalancesView | None = None,
                 asset_units: Mapping[str, int] | None = None,
                 observer: Observer | None = None, min_interval_s: float = 0.0,
                 urgent: Callable[[], bool] | None = None) -> None:
        """``min_interval_s`` > 0 coalesces the reads of an idle router
        (``redisio.tail``) except while ``urgent()`` says someone waits for an
        answer; then call :meth:`wake` when a wait begins and :meth:`caught_up`
        before reading the views. 0 (the order-entry gateway's): every commit
        is read as soon as it lands."""
        topology = redis if isinstance(redis, Topology) else Topology.of_client(redis)
        self._markets = {m.symbol: m for m in markets}
        self._by_key = {out_stream(s).encode(): m for s, m in self._markets.items()}
        # Risk stage: sx:{acct-K}:out -> K.
        self._shard_by_key = {risk_keys(k).output.encode(): k for k in range(risk_shards)}
        self._balances = balances if balances is not None else BalancesView()
        self._units: Mapping[str, int] = asset_units or {}
        self._risk_last_seq = dict.fromkeys(range(risk_shards), -1)
        self._groups = [_Group(StreamTail(topology, count, min_interval_s=min_interval_s), keys)
                        for keys in topology.groups([*self._by_key, *self._shard_by_key])]
        self._urgent = urgent
        self._view = view
        self._deliver = deliver
        self._wanted = wanted
        self._block_ms = block_ms
        self._observer = observer
        self._last_seq = dict.fromkeys(self._markets, -1)
        self.entries = 0
        self.read_retries = 0
        """Reads of the ``:out`` streams that failed and were retried (after a reconnect)."""
        self.duplicates = 0
        """Events skipped because their seq was already handled."""
        self.read_failure: str | None = None
        """The error of the last failed read of the event streams (None: the last read
        worked); the gateway's ``/readyz`` reports it."""

    async def load(self) -> None:
        """Snapshot + catch-up for every market; returns once the view is current."""
        for group in self._groups:
            for key in group.positions:
                shard = self._shard_by_key.get(key)
                if shard is not None:
                    await self._load_risk(group, key, shard)
                    continue
                market = self._by_key[key]
                snap_name = snap_key(market.symbol)
                data: bytes | None = await self._at_start(group.tail.call, snap_name, "GET",
                                                          snap_name)
                if data is None:
                    continue
                try:
                    snap = decode_snapshot(data)
                except Exception as exc:  # foreign or corrupt: follow :out from the start
                    log.error("%s: cannot decode snapshot (%r); reading events from the start",
                              market.symbol, exc)
                    continue
                self._view.load_snapshot(snap)
                self._last_seq[market.symbol] = snap.seq
                group.positions[key] = snap.last_out_id.encode()
            while await self._at_start(self._read, group, None):
                pass

    async def _load_risk(self, group: _Group, key: bytes, shard: int) -> None:
        """Risk shard ``shard``'s snapshot into the balances view; :out is read after it."""
        snap_name = risk_keys(shard).snap
        data: bytes | None = await self._at_start(group.tail.call, snap_name, "GET", snap_name)
        if data is None:
            return
        try:
            snap = decode_risk_snapshot(data)
        except Exception as exc:  # foreign or corrupt: follow :out from the start
            log.error("risk shard %d: cannot decode snapshot (%r); reading events from the "
                      "start", shard, exc)
            return
        self._balances.load_snapshot(snap)
        self._risk_last_seq[shard] = snap.seq
        group.positions[key] = snap.last_out_id.encode()

    async def _at_start(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``call(*args)``, retried while the slot map is not settled (a node just
        promoted, a replica not yet known everywhere): up to :data:`START_RETRY_S`."""
        deadline = time.monotonic() + START_RETRY_S
        delay = 0.05
        while True:
            try:
                return await call(*args)
            except TopologyError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("loading the view: %s; retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def run(self) -> None:
        """Follow ``:out`` until cancelled; Redis errors are logged and retried with backoff."""
        if len(self._groups) == 1:
            await self._follow(self._groups[0])
        else:
            await asyncio.gather(*(self._follow(group) for group in self._groups))

    async def _follow(self, group: _Group) -> None:
        delay = 0.05
        while True:
            try:
                handled = await self._read(group, self._block_ms)
                self.read_failure = None
                if handled:
                    # Let the sessions' writers send the reports just queued before
                    # this task writes its next XREAD: a report goes out one
                    # system call (~20-40 us on loopback) sooner.
                    await asyncio.sleep(0)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.read_failure = repr(exc)
                self.read_retries += 1
                log.warning("reading event streams %s failed: %r; retrying in %.2f s",
                            b",".join(group.positions).decode(), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    @property
    def pausing(self) -> bool:
        """Whether a reader is pausing between reads (``min_interval_s``). O(groups)."""
        return any(group.tail.paused for group in self._groups)

    def wake(self) -> None:
        """End every pause between reads now (a request began to wait for an answer). O(1)
        per group."""
        for group in self._groups:
            group.tail.wake()

    async def caught_up(self, timeout_s: float = CAUGHT_UP_WAIT_S) -> None:
        """Return once the views hold what the streams held when this was called: at once
        unless a reader is pausing between reads (``min_interval_s``), which then reads
        what there is (one round trip). At most ``timeout_s`` (then the views as they are:
        a reader that lost Redis retries on its own)."""
        paused = [(group, group.reads) for group in self._groups if group.tail.paused]
        if not paused:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for group, reads in paused:
                    group.tail.wake()
                    while group.reads == reads:
                        group.read_done.clear()
                        await group.read_done.wait()

    async def _read(self, group: _Group, block_ms: int | None) -> int:
        """One XREAD over the group's markets; returns how many entries it handled."""
        positions = group.positions
        urgent = self._urgent
        reply = await group.tail.read(positions, block_ms,
                                      pause=urgent is None or not urgent())
        handled = 0
        for key, entries in reply:
            market = self._by_key.get(key)
            if market is None:
                shard = self._shard_by_key[key]
                for entry_id, fields in entries:
                    self._handle_risk(shard, fields, key, entry_id)
                    positions[key] = entry_id
                    handled += 1
                continue
            for entry_id, fields in entries:
                self._handle(market, fields, key, entry_id)
                positions[key] = entry_id
                handled += 1
        self.entries += handled
        group.reads += 1
        group.read_done.set()
        return handled

    async def close(self) -> None:
        """Close the readers' connections (after cancelling :meth:`run`)."""
        for group in self._groups:
            await group.tail.close()

    def _handle(self, market: Market, fields: list[bytes], key: bytes,
                entry_id: bytes) -> None:
        symbol = market.symbol
        try:
            events = events_of(fields)
        except Exception as exc:
            log.error("%s: undecodable event entry skipped: %r", symbol, exc)
            return
        view = self._view
        deliver = self._deliver
        wanted = self._wanted
        last = self._last_seq[symbol]
        if events and events[0].seq == FIRST_SEQ:
            last = FIRST_SEQ - 1  # the market's history starts anew (Redis lost everything)
        for event in events:
            if event.seq <= last:
                self.duplicates += 1
                continue
            last = event.seq
            view.apply_event(symbol, event)
            if isinstance(event, Report):
                if wanted(event.account):
                    deliver(event.account, push_frame(report_of(market, event)))
            elif isinstance(event, CancelRejected) and wanted(event.account):
                # The view is exactly as of this event: the order, if still open, as it is.
                order = view.find(symbol, event.account, event.order_id, event.client_order_id)
                deliver(event.account, push_frame(cancel_rejected_of(market, event, order)))
        self._last_seq[symbol] = last
        last_input = field_of(fields, OUT_INPUT_FIELD)
        if last_input:
            view.set_applied(symbol, last_input.decode())
        if self._observer is not None:
            self._observer(key, entry_id, symbol, events)

    def _handle_risk(self, shard: int, fields: list[bytes], key: bytes,
                     entry_id: bytes) -> None:
        """One ``sx:{acct-K}:out`` entry: balances and the risk stage's own answers."""
        try:
            data = field_of(fields, OUT_EVENTS_FIELD)
            if data is None:
                raise KeyError(OUT_EVENTS_FIELD)
            events = decode_risk_events(data)
        except Exception as exc:
            log.error("risk shard %d: undecodable event entry skipped: %r", shard, exc)
            return
        wanted = self._wanted
        deliver = self._deliver
        last = self._risk_last_seq[shard]
        if events and events[0].seq == FIRST_SEQ:
            last = FIRST_SEQ - 1  # the shard's history starts anew (Redis lost everything)
        for event in events:
            if event.seq <= last:
                self.duplicates += 1
                continue
            last = event.seq
            if type(event) is Balance:
                self._balances.apply(shard, event)
                if wanted(event.account):
                    decimals = self._units.get(event.asset)
                    if decimals is None:
                        log.error("risk shard %d: balance of unknown asset %r not pushed",
                                  shard, event.asset)
                        continue
                    # The view's total: the fee account's balance spans every shard.
                    available, held = self._balances.get(event.account, event.asset)
                    deliver(event.account, balance_frame(event.asset, decimals, available,
                                                         held, event.ts))
            elif type(event) is MarketAnswer:
                self._answer(shard, event)
                if self._observer is not None:
                    self._observer(key, entry_id, event.symbol, [event.event])
            elif type(event) is InputRejected:
                log.error("risk shard %d: input %s rejected: %s", shard, event.input_id,
                          event.reason)
        self._risk_last_seq[shard] = last

    def _answer(self, shard: int, answer: MarketAnswer) -> None:
        """A report the risk stage gave on market ``answer.symbol``'s behalf."""
        market = self._markets.get(answer.symbol)
        event = answer.event
        if market is None:
            log.error("risk shard %d: answer for unlisted market %r skipped", shard,
                      answer.symbol)
            return
        view = self._view
        view.apply_answer(event)
        if not self._wanted(event.account):
            return
        exec_id = risk_exec_id(shard, answer.seq)
        if isinstance(event, Report):
            frame = push_frame(report_of(market, event, exec_id))
        else:
            order = view.find(answer.symbol, event.account, event.order_id,
                              event.client_order_id)
            frame = push_frame(cancel_rejected_of(market, event, order, exec_id))
        self._deliver(event.account, frame)

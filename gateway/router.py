"""Follows every market's event stream: keeps the open-orders view and routes reports.

:meth:`ExecutionRouter.load` rebuilds the view from each market's snapshot and
the ``:out`` entries after it (call it before serving); :meth:`ExecutionRouter.run`
then follows ``:out`` with one blocking ``XREAD`` over all markets (on its own
connection, see :class:`~redisio.tail.StreamTail`) and, for
every ``Report`` and ``CancelRejected``, updates the view and hands the encoded
``executions`` push to ``deliver(account, frame)``, which sends it to that
account's connections only (nothing is encoded when ``wanted(account)`` is
False: the account has no connection here). Cost per event: one decode (shared by the whole
entry), one format and one encode, whatever the number of connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from contract.events import CancelRejected, Report
from contract.keys import out_stream, snap_key
from contract.market import Market
from contract.snapshot import decode_snapshot
from contract.streams import OUT_INPUT_FIELD, events_of, field_of
from gateway.orders_view import OpenOrdersView
from gateway.reports import cancel_rejected_of, push_frame, report_of
from redisio.tail import StreamTail

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], None]


BLOCK_MS = 1000
"""XREAD BLOCK of the :out reader: the longest it waits for new events."""


class ExecutionRouter:
    """One reader of all markets' ``:out`` streams per gateway process."""

    def __init__(self, redis: aioredis.Redis, markets: Iterable[Market], view: OpenOrdersView,
                 deliver: Deliver, wanted: Callable[[str], bool], block_ms: int = BLOCK_MS,
                 count: int = 500) -> None:
        self._redis = redis
        self._tail = StreamTail(redis, count)
        self._markets = {m.symbol: m for m in markets}
        self._by_key = {out_stream(s).encode(): m for s, m in self._markets.items()}
        self._view = view
        self._deliver = deliver
        self._wanted = wanted
        self._block_ms = block_ms
        self._positions: dict[bytes, bytes] = {k: b"0-0" for k in self._by_key}
        self.entries = 0

    async def load(self) -> None:
        """Snapshot + catch-up for every market; returns once the view is current."""
        for key, market in self._by_key.items():
            data: bytes | None = await self._redis.get(snap_key(market.symbol))  # type: ignore[assignment]
            if data is None:
                continue
            try:
                snap = decode_snapshot(data)
            except Exception as exc:  # a foreign or corrupt snapshot: follow :out from the start
                log.error("%s: cannot decode snapshot (%r); reading events from the start",
                          market.symbol, exc)
                continue
            self._view.load_snapshot(snap)
            self._positions[key] = snap.last_out_id.encode()
        while await self._read(None):
            pass

    async def run(self) -> None:
        """Follow ``:out`` until cancelled; Redis errors are logged and retried with backoff."""
        delay = 0.05
        while True:
            try:
                if await self._read(self._block_ms):
                    # Let the sessions' writers send the reports just queued before
                    # this task writes its next XREAD: a report goes out one
                    # system call (~20-40 us on loopback) sooner.
                    await asyncio.sleep(0)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading event streams failed: %r; retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _read(self, block_ms: int | None) -> int:
        """One XREAD over all markets; returns how many entries it handled."""
        reply = await self._tail.read(self._positions, block_ms)
        handled = 0
        for key, entries in reply:
            market = self._by_key[key]
            for entry_id, fields in entries:
                self._handle(market, fields)
                self._positions[key] = entry_id
                handled += 1
        self.entries += handled
        return handled

    async def close(self) -> None:
        """Close the reader's connection (after cancelling :meth:`run`)."""
        await self._tail.close()

    def _handle(self, market: Market, fields: list[bytes]) -> None:
        symbol = market.symbol
        try:
            events = events_of(fields)
        except Exception as exc:
            log.error("%s: undecodable event entry skipped: %r", symbol, exc)
            return
        view = self._view
        deliver = self._deliver
        wanted = self._wanted
        for event in events:
            view.apply_event(symbol, event)
            if isinstance(event, Report):
                if wanted(event.account):
                    deliver(event.account, push_frame(report_of(market, event)))
            elif isinstance(event, CancelRejected) and wanted(event.account):
                # The view is exactly as of this event: the order, if still open, as it is.
                order = view.find(symbol, event.account, event.order_id, event.client_order_id)
                deliver(event.account, push_frame(cancel_rejected_of(market, event, order)))
        last_input = field_of(fields, OUT_INPUT_FIELD)
        if last_input:
            view.set_applied(symbol, last_input.decode())

"""The engine's answers to this process's REST requests, as the execution router reads them.

A REST call answers with the state it caused, so the handler waits for the
engine's reports of its request. The gateway's router calls
:meth:`Outcomes.observe` once per ``:out`` entry it reads (``observer`` of
``gateway.router.ExecutionRouter``), and:

- a place resolves with the order's reports in the first entry that has any
  (the engine applies one command entirely in one commit, so these are the
  order's state after its first engine command: ``new`` then its fills, or
  its ``rejected`` / ``expired`` report; under the risk stage a refusal
  comes from the shard's ``:out`` instead). The report may be read before
  the XADD's reply gives the order id: while a place of the account is in
  flight (:meth:`placing`), the first reports of its orders are kept and
  :meth:`placed` finds them there.
- a cancel resolves with the order's next terminal report (``canceled``, or
  ``filled``/``expired`` when it ended first) or with the ``CancelRejected``
  that names it.
- every account that placed or canceled through this process is *tracked*:
  per stream, the id of the last entry read with a report of the account is
  kept, so a query can wait until the history database has written that far
  (read-your-writes, :meth:`position_of`).
- the time each open stop triggered (its ``triggered`` report, any account's)
  is kept until the stop ends, since the open-orders view keeps only an
  order's latest report and REST states a stop's ``workingTime`` as its
  trigger time (:meth:`trigger_time`).

Memory is bounded (:data:`MAX_WAITING` waiters per market and
:data:`MAX_EARLY` early reports per market and account, the oldest dropped;
one position per tracked account and stream; :data:`MAX_TRIGGERS` trigger
times). Cost per entry: one pass over its events for trigger times, and
O(events) more when a request waits or an account is tracked. No I/O:
asyncio futures only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from contract.events import CancelRejected, Event, Report

MAX_WAITING = 100_000
"""Waiting places (and cancels) per market."""
MAX_EARLY = 10_000
"""First reports kept per market and account while its places are in flight (a place's
XADD reply comes within one round trip: older ones are no place's of this process)."""
MAX_TRIGGERS = 1_000_000
"""Trigger times of open stops kept (the oldest dropped: REST then reads the history)."""
TERMINAL = frozenset({"filled", "canceled", "expired", "rejected"})

CancelOutcome = Report | CancelRejected


class Outcomes:
    """Waiters for places and cancels, and the positions of the orders they touched."""

    def __init__(self, max_waiting: int = MAX_WAITING,
                 on_wait: Callable[[], None] | None = None) -> None:
        """``on_wait`` is called when a place or cancel begins to wait (the REST service
        wakes its router with it, see :meth:`waiting`)."""
        self._max_waiting = max_waiting
        self._on_wait = on_wait
        # symbol -> order id -> future of the order's reports in its first entry.
        self._places: dict[str, dict[str, asyncio.Future[list[Report]]]] = {}
        # account -> (symbol, order id) of its places waiting for their first reports.
        self._pending: dict[str, set[tuple[str, str]]] = {}
        # (symbol, account) -> places in flight (XADD sent, no reply yet).
        self._in_flight: dict[tuple[str, str], int] = {}
        # (symbol, account) -> order id -> first-entry reports read while places of the
        # account were in flight.
        self._early: dict[tuple[str, str], dict[str, list[Report]]] = {}
        # symbol -> order id -> futures of the cancels waiting for its outcome.
        self._cancels: dict[str, dict[str, list[asyncio.Future[CancelOutcome]]]] = {}
        self._accounts: set[str] = set()
        # (stream, account) -> id of the last entry read with a report of the account.
        self._positions: dict[tuple[str, str], bytes] = {}
        # (symbol, order id) -> ts of the triggered report of an open stop.
        self._triggers: dict[tuple[str, str], int] = {}

    def waiting(self) -> bool:
        """Whether a request waits for the engine's answer (a place in flight or waiting
        for its first reports, a cancel for its outcome). O(markets)."""
        return bool(self._in_flight) or any(self._places.values()) or \
            any(self._cancels.values())

    # -- places ---------------------------------------------------------------------

    def placing(self, symbol: str, account: str) -> None:
        """A place of ``account`` is being XADDed: keep its orders' first reports."""
        if self._on_wait is not None:
            self._on_wait()
        self._accounts.add(account)
        key = (symbol, account)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def place_failed(self, symbol: str, account: str) -> None:
        """The place's XADD failed: nothing to wait for."""
        self._landed(symbol, account)

    def placed(self, symbol: str, account: str, order_id: str
               ) -> asyncio.Future[list[Report]]:
        """The place's XADD returned ``order_id``: the future of its first reports."""
        future: asyncio.Future[list[Report]] = asyncio.get_running_loop().create_future()
        early = self._early.get((symbol, account))
        reports = None if early is None else early.pop(order_id, None)
        self._landed(symbol, account)
        if reports is not None:
            future.set_result(reports)
            return future
        waiting = self._places.setdefault(symbol, {})
        waiting[order_id] = future
        pending = self._pending.setdefault(account, set())
        pending.add((symbol, order_id))

        def settled(_: asyncio.Future[list[Report]]) -> None:
            pending.discard((symbol, order_id))
            if not pending and self._pending.get(account) is pending:
                del self._pending[account]

        future.add_done_callback(settled)
        if len(waiting) > self._max_waiting:
            oldest = next(iter(waiting))
            waiting.pop(oldest).cancel()
        return future

    def pending_place(self, symbol: str, order_id: str) -> asyncio.Future[list[Report]] | None:
        """The future of a place of this process whose first reports are not read yet."""
        return self._places.get(symbol, {}).get(order_id)

    def pending_of(self, account: str, symbol: str | None = None
                   ) -> list[asyncio.Future[list[Report]]]:
        """The futures of ``account``'s places (in ``symbol``, or any) not reported yet."""
        places = self._places
        return [f for s, o in self._pending.get(account, ()) if symbol is None or s == symbol
                if (f := places.get(s, {}).get(o)) is not None]

    def _landed(self, symbol: str, account: str) -> None:
        key = (symbol, account)
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
            self._early.pop(key, None)

    # -- cancels --------------------------------------------------------------------

    def canceling(self, symbol: str, account: str, order_id: str
                  ) -> asyncio.Future[CancelOutcome]:
        """Call before submitting a cancel of ``order_id``: the future of its outcome."""
        if self._on_wait is not None:
            self._on_wait()
        future: asyncio.Future[CancelOutcome] = asyncio.get_running_loop().create_future()
        waiting = self._cancels.setdefault(symbol, {})
        waiting.setdefault(order_id, []).append(future)
        if len(waiting) > self._max_waiting:
            for stale in waiting.pop(next(iter(waiting))):
                stale.cancel()
        self._accounts.add(account)
        return future

    def discard(self, symbol: str, order_id: str, future: asyncio.Future[CancelOutcome]
                ) -> None:
        """Stop waiting with ``future`` (its cancel failed or timed out)."""
        waiting = self._cancels.get(symbol, {})
        futures = waiting.get(order_id)
        if futures is not None and future in futures:
            futures.remove(future)
            if not futures:
                del waiting[order_id]

    # -- read-your-writes -----------------------------------------------------------

    def position_of(self, stream: str, account: str) -> bytes | None:
        """Id of the last entry of ``stream`` (a symbol or ``acct-K``) read with a report of
        ``account``, if it is tracked and there was one."""
        return self._positions.get((stream, account))

    # -- stops ------------------------------------------------------------------------

    def trigger_time(self, symbol: str, order_id: str) -> int | None:
        """When the open stop ``order_id`` triggered, if this process read its ``triggered``
        report (None: untriggered, ended, not a stop, or triggered before this process
        started: ask the history database). O(1)."""
        return self._triggers.get((symbol, order_id))

    def _note_triggers(self, symbol: str, events: Sequence[Event]) -> None:
        triggers = self._triggers
        for event in events:
            if type(event) is Report:
                assert isinstance(event, Report)
                if event.exec_type == "triggered":
                    triggers[(symbol, event.order_id)] = event.ts
                    if len(triggers) > MAX_TRIGGERS:
                        del triggers[next(iter(triggers))]
                elif triggers and event.status in TERMINAL:
                    triggers.pop((symbol, event.order_id), None)

    # -- the router's side ------------------------------------------------------------

    def observe(self, stream: str, entry_id: bytes, symbol: str,
                events: Sequence[Event]) -> None:
        """One ``:out`` entry of ``stream`` (a symbol or ``acct-K``) with events of market
        ``symbol`` (``gateway.router.Observer``, the stream named as history names it)."""
        self._note_triggers(symbol, events)
        places = self._places.get(symbol)
        cancels = self._cancels.get(symbol)
        accounts = self._accounts
        if not (places or cancels or accounts):
            return
        first: dict[str, list[Report]] | None = None
        for event in events:
            kind = type(event)
            if kind is Report:
                assert isinstance(event, Report)
                order_id = event.order_id
                if (places and order_id in places) or (symbol, event.account) in self._in_flight:
                    if first is None:
                        first = {}
                    first.setdefault(order_id, []).append(event)
                if cancels and order_id in cancels and event.status in TERMINAL:
                    for future in cancels.pop(order_id):
                        if not future.done():
                            future.set_result(event)
            elif kind is CancelRejected:
                assert isinstance(event, CancelRejected)
                order_id = event.order_id or ""
                if cancels and order_id in cancels:
                    for future in cancels.pop(order_id):
                        if not future.done():
                            future.set_result(event)
            else:
                continue
            if event.account in accounts:
                self._positions[(stream, event.account)] = entry_id
        if first:
            self._resolve_first(symbol, first)

    def _resolve_first(self, symbol: str, first: dict[str, list[Report]]) -> None:
        places = self._places.get(symbol) or {}
        for order_id, reports in first.items():
            future = places.pop(order_id, None)
            if future is not None:
                if not future.done():
                    future.set_result(reports)
                continue
            early = self._early.setdefault((symbol, reports[0].account), {})
            if order_id not in early:  # only its first entry counts
                early[order_id] = reports
                if len(early) > MAX_EARLY:
                    del early[next(iter(early))]

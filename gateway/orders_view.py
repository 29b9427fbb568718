"""Every account's open orders as the engine applied them, rebuilt from Redis data (no I/O).

The gateway loads each market's snapshot (:meth:`OpenOrdersView.load_snapshot`)
and then feeds every ``:out`` entry after the snapshot's ``last_out_id`` to
:meth:`OpenOrdersView.apply`, so the view always equals the engine's book as
of the last entry read: an order that was "received" but not yet applied is
not in it yet (its ``new`` report follows). An untriggered stop or take-profit
is an open order too (status ``untriggered``, then ``new`` once its
``triggered`` report is applied), and so is the whole of an iceberg. Costs:
O(1) per event, O(k log k) for an account's k open orders.

Orders are also indexed by ``(account, client_order_id)`` per market
(:meth:`OpenOrdersView.find`, :meth:`OpenOrdersView.by_client_id`): the
gateway refuses a place whose client order id is open, and states a refused
cancel's or amend's order as of that event (events are applied in order).

Under the risk stage (``staged`` given) order ids are risk input ids, not
the market's: every report the view applies, and every report the risk
stage answered itself (:meth:`OpenOrdersView.apply_answer`), resolves the
gateway's pending place of that id (``gateway.staged``), and
:meth:`OpenOrdersView.may_be_open` asks it instead of comparing with the
market's applied input id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from contract.events import Event, Report
from contract.ids import parse_id, ts_of
from contract.snapshot import RestingOrder, Snapshot
from gateway.staged import StagedPlaces

log = logging.getLogger(__name__)

_OPEN = frozenset({"new", "partially_filled", "untriggered"})
"""Statuses of an open order: in the book, or (``untriggered``) a stop waiting off-book."""


class OpenOrdersView:
    """Open orders per market and account, each as its latest engine ``Report``."""

    def __init__(self, symbols: Iterable[str], staged: StagedPlaces | None = None) -> None:
        self.staged = staged
        """The risk stage's pending places of this process (None without the risk stage)."""
        self._open: dict[str, dict[str, Report]] = {s: {} for s in symbols}
        self._by_account: dict[str, dict[str, dict[str, Report]]] = {}
        # symbol -> (account, client_order_id) -> order_id of the open order.
        self._by_client_id: dict[str, dict[tuple[str, str], str]] = {s: {} for s in self._open}
        self._applied: dict[str, tuple[int, int]] = {s: (0, 0) for s in self._open}
        self._seq: dict[str, int | None] = {s: None for s in self._open}
        self.gaps = 0
        """How many times the event ``seq`` jumped (data missed; logged)."""

    # -- feeding ------------------------------------------------------------------

    def load_snapshot(self, snap: Snapshot) -> None:
        """Replace the market's orders with the snapshot's; continue after ``last_out_id``.

        Each order is restated as its engine report would state it: its type and time
        in force, ``untriggered`` for a stop waiting off-book, the whole quantity of an
        iceberg (``leaves`` = qty - cum_qty, not the visible slice). O(orders).
        """
        symbol = snap.symbol
        for order_id in list(self._open[symbol]):
            self._drop(symbol, order_id)
        for o in snap.orders:
            self._keep(symbol, _report_of_resting(snap.seq, o))
        self._applied[symbol] = parse_id(snap.last_input_id)
        self._seq[symbol] = snap.seq

    def apply(self, symbol: str, events: Iterable[Event], last_input_id: str | None) -> None:
        """Apply one ``:out`` entry: its events in order, then the input id it reached."""
        for event in events:
            self.apply_event(symbol, event)
        if last_input_id is not None:
            self.set_applied(symbol, last_input_id)

    def apply_event(self, symbol: str, event: Event) -> None:
        """Apply one event; reports open, update or close orders, the rest only count."""
        last = self._seq[symbol]
        if last is not None and event.seq != last + 1 and event.seq > last:
            self.gaps += 1
            log.error("%s: event seq jumped from %d to %d", symbol, last, event.seq)
        self._seq[symbol] = event.seq
        if type(event) is Report:
            if event.status in _OPEN and event.exec_type != "rejected":
                self._keep(symbol, event)
            elif event.order_id in self._open[symbol]:
                self._drop(symbol, event.order_id)
            if self.staged is not None:
                self.staged.resolve(event.order_id)

    def apply_answer(self, event: Event) -> None:
        """Apply what the risk stage answered on a market's behalf (``MarketAnswer.event``).

        Such an order never reached the market: nothing opens or closes (a refused
        amend leaves its order as it is); a refused place's pending id is resolved.
        """
        if type(event) is Report and self.staged is not None:
            self.staged.resolve(event.order_id)

    def set_applied(self, symbol: str, last_input_id: str) -> None:
        """Record that the engine has applied every input entry up to ``last_input_id``."""
        key = parse_id(last_input_id)
        if key > self._applied[symbol]:
            self._applied[symbol] = key

    # -- queries ------------------------------------------------------------------

    def open_orders(self, account: str, symbol: str | None = None) -> list[tuple[str, Report]]:
        """``(symbol, report)`` of the account's open orders, by market then age. O(k log k)."""
        markets = self._by_account.get(account)
        if not markets:
            return []
        symbols = [symbol] if symbol is not None else sorted(markets)
        found: list[tuple[str, Report]] = []
        for s in symbols:
            orders = markets.get(s)
            if orders:
                found += [(s, r) for r in sorted(orders.values(),
                                                 key=lambda r: parse_id(r.order_id))]
        return found

    def get(self, symbol: str, order_id: str) -> Report | None:
        """The latest report of an open order, or None. O(1)."""
        return self._open[symbol].get(order_id)

    def by_client_id(self, symbol: str, account: str, client_order_id: str) -> Report | None:
        """The latest report of the account's open order with that client id, or None. O(1)."""
        order_id = self._by_client_id[symbol].get((account, client_order_id))
        return None if order_id is None else self._open[symbol][order_id]

    def find(self, symbol: str, account: str, order_id: str | None,
             client_order_id: str | None) -> Report | None:
        """The account's open order named as a cancel or amend names it (as the engine does).

        By ``order_id`` (and then ``client_order_id`` must match too, if given),
        else by ``client_order_id``; None when the account has no such open
        order (another account's order is never found). O(1).
        """
        if order_id is not None:
            report = self._open[symbol].get(order_id)
            if report is None or report.account != account:
                return None
            if client_order_id is not None and report.client_order_id != client_order_id:
                return None
            return report
        if client_order_id is not None:
            return self.by_client_id(symbol, account, client_order_id)
        return None

    def applied(self, symbol: str) -> tuple[int, int]:
        """The last input entry id the engine has applied, parsed (``(0, 0)`` before any)."""
        return self._applied[symbol]

    def may_be_open(self, symbol: str, order_id: str) -> bool:
        """False only when the engine has applied ``order_id``'s place and the order is closed.

        Under the risk stage: open in the view, or one of this process's places whose
        first report the view has not applied yet. O(1).
        """
        if order_id in self._open[symbol]:
            return True
        if self.staged is not None:
            return self.staged.is_pending(order_id)
        return parse_id(order_id) > self._applied[symbol]

    def last_seq(self, symbol: str) -> int | None:
        """Seq of the last event applied for the market (None before any data)."""
        return self._seq[symbol]

    # -- internals ----------------------------------------------------------------

    def _keep(self, symbol: str, report: Report) -> None:
        self._open[symbol][report.order_id] = report
        markets = self._by_account.get(report.account)
        if markets is None:
            markets = self._by_account[report.account] = {}
        orders = markets.get(symbol)
        if orders is None:
            orders = markets[symbol] = {}
        orders[report.order_id] = report
        if report.client_order_id is not None:
            self._by_client_id[symbol][(report.account, report.client_order_id)] = \
                report.order_id

    def _drop(self, symbol: str, order_id: str) -> None:
        report = self._open[symbol].pop(order_id)
        markets = self._by_account[report.account]
        orders = markets[symbol]
        del orders[order_id]
        if report.client_order_id is not None:
            by_client_id = self._by_client_id[symbol]
            key = (report.account, report.client_order_id)
            if by_client_id.get(key) == order_id:
                del by_client_id[key]
        if not orders:
            del markets[symbol]
            if not markets:
                del self._by_account[report.account]


def _report_of_resting(seq: int, o: RestingOrder) -> Report:
    """The latest report a snapshot's open order stands for (exec_type ``status``)."""
    status = "untriggered" if o.untriggered else "partially_filled" if o.cum_qty else "new"
    return Report(
        seq, ts_of(o.order_id), o.account, o.order_id, o.client_order_id,
        o.side, o.type, o.tif, o.price, o.qty,  # type: ignore[arg-type]
        "status", status, 0, 0, o.cum_qty, o.qty - o.cum_qty,  # type: ignore[arg-type]
        o.cum_notional, None, None, None,
        stop_price=o.stop_price, expire_time=o.expire_time, display_qty=o.display_qty,
    )

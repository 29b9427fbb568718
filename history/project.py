"""Stream entries -> database rows: the pure core of ``streamex history``.

A :class:`Projection` takes the raw entries of the markets' ``sx:{SYM}:out``
(:meth:`Projection.add_market`) and the risk shards' ``sx:{acct-K}:out``
(:meth:`Projection.add_risk`), in each stream's order, and accumulates one
``store.batch.Batch``: executions, trades, the orders' new states, candles,
balances, transfers, and the streams' new positions. :meth:`Projection.take`
hands the batch over (to ``Store.write``) and starts the next. No I/O, no
clock: the same entries from the same :class:`~store.batch.ResumeState`
always give the same rows, however they are cut into batches.

State carried between batches, all of it rebuilt from the database by
``Store.load_state`` (so a restart continues exactly): each stream's
position ``(last_id, last_seq)``, each candle series' current candle
(``candles.core.CandleSeries``, one per market and interval; a candle is
closed by a trade of a later interval or when an event's time passes its
``close_time``, as the feed does), and the fees
so far of open orders (a report carries its fill's fee, the orders table
the total). If a write fails the projection must be dropped and rebuilt
from the database: it has moved past what was committed.

Seqs: every event of a stream carries the stream's contiguous ``seq``. An
entry whose first seq is above ``last_seq + 1`` follows a gap (retention
trimmed what was never read, or an entry could not be decoded): a gap row
is added and a :class:`Notice` returned, and the entry is taken. Events at
or below ``last_seq`` were written already (an engine republishes the same
events under the same seqs after a Redis failover): they are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import msgspec

from candles.core import INTERVALS, Candle, CandleSeries
from contract.events import CancelRejected, Report, Trade
from contract.ids import order_number, ts_of
from contract.risk import Balance, MarketAnswer, RiskEvent, Transfer, decode_risk_events, risk_tag
from contract.streams import OUT_EVENTS_FIELD, events_of, field_of
from store.batch import (
    BalanceUpsert,
    Batch,
    CandleUpsert,
    ExecutionInsert,
    GapInsert,
    OrderUpsert,
    PositionUpdate,
    ResumeState,
)

START_ID = "0-0"
OPEN_STATUSES = frozenset(("new", "partially_filled", "untriggered"))
"""An order in one of these is open (an untriggered stop waits off-book: open too)."""
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError, TypeError)


class Notice(NamedTuple):
    """Something the caller should log about an entry of ``stream``.

    ``gap``: events ``first_seq..last_seq`` are missing before entry ``entry_id``
    (``after_id`` is the last entry read before it); ``undecodable``: the entry's
    events could not be read (skipped; the next entry shows the gap);
    ``republished``: its events ``first_seq..last_seq`` were written already.
    """

    kind: Literal["gap", "undecodable", "republished"]
    stream: str
    entry_id: str
    after_id: str = ""
    first_seq: int = 0
    last_seq: int = 0


def _risk_events(fields: Any) -> list[RiskEvent]:
    data = field_of(fields, OUT_EVENTS_FIELD)
    if data is None:
        raise KeyError(OUT_EVENTS_FIELD)
    return decode_risk_events(data)


class Projection:
    """Rows of the entries added since the last :meth:`take`, and the state to go on.

    ``state`` is the database's (``Store.load_state``); ``symbols`` the markets
    whose candles it keeps. Cost per event: a tuple or two; per trade one
    ``CandleSeries.add`` per interval.
    """

    def __init__(self, state: ResumeState, symbols: Sequence[str]) -> None:
        self._positions: dict[str, tuple[str, int]] = dict(state.positions)
        self._written: dict[str, str | None] = {s: p[0] for s, p in state.positions.items()}
        self._fees = dict(state.open_fees)
        self._series: dict[str, list[tuple[str, CandleSeries]]] = {}
        for symbol in symbols:
            series = []
            for interval, width in INTERVALS.items():
                s = CandleSeries(width, keep=0)
                current = state.candles.get((symbol, interval))
                if current is not None:
                    s.load([current])
                series.append((interval, s))
            self._series[symbol] = series
        self._reset()

    def _reset(self) -> None:
        self._batch = Batch()
        self._orders: dict[tuple[str, str], list[Any]] = {}
        self._candles: dict[tuple[str, str, int], tuple[str, str, Candle]] = {}
        self._balances: dict[tuple[int, str, str], Balance] = {}
        self._touched: set[str] = set()

    # -- positions ---------------------------------------------------------------------

    def position(self, stream: str) -> tuple[str, int]:
        """``(last_id, last_seq)`` of ``stream`` as of the entries added so far
        (``("0-0", 0)`` for a stream never written): read on from ``last_id``."""
        return self._positions.get(stream, (START_ID, 0))

    @property
    def pending_entries(self) -> int:
        """Entries added since the last :meth:`take`."""
        return self._batch.entries

    def take(self) -> Batch:
        """The batch of everything added since the last call, positions included; starts
        the next one. Cost: O(orders, candles and balances touched)."""
        batch = self._batch
        positions: list[PositionUpdate] = []
        for stream in sorted(self._touched):
            last_id, last_seq = self._positions[stream]
            positions.append((stream, self._written.get(stream), last_id, last_seq))
            self._written[stream] = last_id
        batch.positions = positions
        batch.orders = [_order_upsert(o) for o in self._orders.values()]
        candles: list[CandleUpsert] = []
        for symbol, interval, c in self._candles.values():
            candles.append((symbol, interval, c.open_time, c.close_time, c.open, c.high, c.low,
                            c.close, c.volume, str(c.quote_volume), c.trades, int(c.closed)))
        batch.candles = candles
        balances: list[BalanceUpsert] = []
        for (shard, _, _), b in self._balances.items():
            balances.append((shard, b.account, b.asset, str(b.available), str(b.held), b.seq,
                             b.ts))
        batch.balances = balances
        self._reset()
        return batch

    def _admit(self, stream: str, entry_id: str, events: Sequence[Any], noted_ms: int,
               notices: list[Notice]) -> Sequence[Any]:
        """The events of one entry not yet written; moves the position past the entry."""
        self._touched.add(stream)
        last_id, last_seq = self._positions.get(stream, (START_ID, 0))
        batch = self._batch
        batch.entries += 1
        batch.events += len(events)
        if events:
            first = events[0].seq
            if first > last_seq + 1:
                gap: GapInsert = (stream, last_id, entry_id, last_seq + 1, first - 1, noted_ms)
                batch.gaps.append(gap)
                notices.append(Notice("gap", stream, entry_id, last_id, last_seq + 1, first - 1))
            elif first <= last_seq:
                kept = [e for e in events if e.seq > last_seq]
                notices.append(Notice("republished", stream, entry_id, last_id, first,
                                      min(last_seq, events[-1].seq)))
                events = kept
            if events:
                last_seq = events[-1].seq
        self._positions[stream] = (entry_id, last_seq)
        return events

    def _undecodable(self, stream: str, entry_id: str, notices: list[Notice]) -> None:
        self._touched.add(stream)
        self._batch.entries += 1
        self._positions[stream] = (entry_id, self._positions.get(stream, (START_ID, 0))[1])
        notices.append(Notice("undecodable", stream, entry_id))

    # -- market streams ----------------------------------------------------------------

    def add_market(self, symbol: str, entries: Sequence[Any], noted_ms: int) -> list[Notice]:
        """Add raw ``sx:{symbol}:out`` entries (``[id, [field, value, ...]]``), in stream
        order, after the stream's :meth:`position`. ``noted_ms`` dates any gap found.
        Returns what to log. Cost: the decode plus O(events)."""
        notices: list[Notice] = []
        batch = self._batch
        executions = batch.executions
        trades = batch.trades
        candles = self._candles
        series = self._series.get(symbol, [])
        for entry_id_raw, fields in entries:
            entry_id = entry_id_raw.decode() if type(entry_id_raw) is bytes else str(entry_id_raw)
            try:
                decoded: list[Any] = events_of(fields)
            except _DECODE_ERRORS:
                self._undecodable(symbol, entry_id, notices)
                continue
            for e in self._admit(symbol, entry_id, decoded, noted_ms, notices):
                t = type(e)
                if t is Report:
                    executions.append((
                        symbol, e.seq, symbol, e.ts, e.account, e.order_id, e.client_order_id,
                        e.exec_type, e.status, e.side, e.price, e.qty, e.last_qty,
                        e.last_price, e.cum_qty, e.leaves_qty, str(e.cum_notional),
                        e.liquidity, e.trade_id, str(e.fee), e.reason))
                    self._order(symbol, e)
                elif t is Trade:
                    trades.append((symbol, e.trade_id, e.seq, e.ts, e.price, e.qty,
                                   e.taker_side, e.maker_order_id, e.taker_order_id))
                    ts, price, qty = e.ts, e.price, e.qty
                    for interval, s in series:
                        for c in s.add(ts, price, qty):
                            candles[(symbol, interval, c.open_time)] = (symbol, interval, c)
                elif t is CancelRejected:
                    executions.append(_cancel_rejected(symbol, symbol, e))
                # BookUpdate, InputRejected: nothing to keep
            if decoded:  # the market's clock: candles it has passed are closed
                now = decoded[-1].ts
                for interval, s in series:
                    closed = s.close_until(now)
                    if closed is not None:
                        candles[(symbol, interval, closed.open_time)] = (symbol, interval,
                                                                         closed)
        return notices

    def _order(self, symbol: str, r: Report) -> None:
        """Fold report ``r`` into its order's row of this batch: its new state, and the
        times of its first ``new`` report (``working_ts``) and, for a stop, of its
        ``triggered`` report (``trigger_ts``). An untriggered stop is open (its status
        ``untriggered``)."""
        key = (symbol, r.order_id)
        fees = self._fees
        total = fees.get(key, 0) + r.fee
        if r.status in OPEN_STATUSES:
            if total:
                fees[key] = total
        elif key in fees:
            del fees[key]
        o = self._orders.get(key)
        if o is None:
            try:
                number: int | None = order_number(r.order_id)
            except ValueError:
                number = None
            try:
                created = ts_of(r.order_id)
            except ValueError:
                created = r.ts
            self._orders[key] = [
                symbol, r.order_id, number, r.account, r.client_order_id, r.side, r.type,
                r.tif, r.price, r.qty, None, r.status, r.cum_qty, r.cum_notional, total,
                r.reason, created, r.ts if r.exec_type == "new" else None, r.ts, r.seq,
                r.stop_price, r.expire_time, r.display_qty,
                r.ts if r.exec_type == "triggered" else None]
            return
        o[8] = r.price
        o[9] = r.qty
        o[11] = r.status
        o[12] = r.cum_qty
        o[13] = r.cum_notional
        o[14] = total
        if r.reason is not None:
            o[15] = r.reason
        if o[17] is None and r.exec_type == "new":
            o[17] = r.ts
        o[18] = r.ts
        o[19] = r.seq
        o[20] = r.stop_price  # an amend may move an untriggered stop's trigger
        o[22] = r.display_qty
        if o[23] is None and r.exec_type == "triggered":
            o[23] = r.ts

    # -- risk streams ------------------------------------------------------------------

    def add_risk(self, shard: int, entries: Sequence[Any], noted_ms: int) -> list[Notice]:
        """Add raw ``sx:{acct-K}:out`` entries of risk shard ``shard`` (stream ``acct-K``),
        as :meth:`add_market` does. Cost: the decode plus O(events)."""
        notices: list[Notice] = []
        stream = risk_tag(shard)
        batch = self._batch
        changes = batch.balance_changes
        transfers = batch.transfers
        executions = batch.executions
        balances = self._balances
        for entry_id_raw, fields in entries:
            entry_id = entry_id_raw.decode() if type(entry_id_raw) is bytes else str(entry_id_raw)
            try:
                decoded: list[Any] = _risk_events(fields)
            except _DECODE_ERRORS:
                self._undecodable(stream, entry_id, notices)
                continue
            for e in self._admit(stream, entry_id, decoded, noted_ms, notices):
                t = type(e)
                if t is Balance:
                    changes.append((shard, e.seq, e.account, e.asset, str(e.available),
                                    str(e.held), e.ts))
                    balances[(shard, e.account, e.asset)] = e
                elif t is MarketAnswer:
                    answer = e.event
                    if type(answer) is Report:
                        executions.append(_execution(stream, e.symbol, answer))
                        self._order(e.symbol, answer)
                    elif type(answer) is CancelRejected:
                        executions.append(_cancel_rejected(stream, e.symbol, answer))
                elif t is Transfer:
                    transfers.append((shard, e.seq, e.ts, e.direction, e.account, e.asset,
                                      str(e.amount), e.ref, e.status, e.reason))
                # InputRejected: nothing to keep
        return notices


def _execution(stream: str, symbol: str, r: Report) -> ExecutionInsert:
    return (stream, r.seq, symbol, r.ts, r.account, r.order_id, r.client_order_id, r.exec_type,
            r.status, r.side, r.price, r.qty, r.last_qty, r.last_price, r.cum_qty, r.leaves_qty,
            str(r.cum_notional), r.liquidity, r.trade_id, str(r.fee), r.reason)


def _cancel_rejected(stream: str, symbol: str, e: CancelRejected) -> ExecutionInsert:
    return (stream, e.seq, symbol, e.ts, e.account, e.order_id, e.client_order_id,
            "cancel_rejected", None, None, 0, 0, 0, 0, 0, 0, "0", None, None, "0", e.reason)


def _order_upsert(o: list[Any]) -> OrderUpsert:
    return (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12],
            str(o[13]), str(o[14]), o[15], o[16], o[17], o[18], o[19], o[20], o[21], o[22],
            o[23])


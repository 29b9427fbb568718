"""The history database's reads: what the REST service and the market-data feed ask.

Methods of :class:`Queries`, which ``store.db.Store`` is; each is
synchronous and safe to call from any thread (asyncio callers use
``asyncio.to_thread``), and each is one or two index range scans
(``Store.explain`` shows the plans; the tests check them on both engines).
Paging follows Binance's REST API (v3): with ``from_*`` or ``start_ms`` the
first ``limit`` rows from there, ascending; otherwise the latest ``limit``
rows (up to ``end_ms`` if given), still returned ascending. The caller caps
``limit`` (Binance: 500 by default, at most 1000); ``limit < 1`` returns
nothing. Times are ms since the epoch, bounds inclusive.

Time ranges become key ranges: an order's ``created_ts`` is the time of its
id and its ``order_number`` orders like that id (``contract.ids``), and a
market's trade ids grow with its trades' times, so every paged read is one
range of one index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from candles.core import INTERVALS, Candle
from contract.ids import ORDER_NUMBER_EPOCH_MS, order_number
from store.rows import BalanceRow, ExecutionRow, GapRow, OrderRow, TradeRow

MAX_KEY = 2**63 - 1

ORDER_COLUMNS = ("symbol, order_id, order_number, account, client_order_id, side, type, tif, "
                 "price, qty, quote_qty, status, cum_qty, cum_notional, fee, reason, "
                 "created_ts, working_ts, updated_ts, last_seq, stop_price, expire_time, "
                 "display_qty, trigger_ts")
EXECUTION_COLUMNS = ("stream, seq, symbol, ts, account, order_id, client_order_id, exec_type, "
                     "status, side, price, qty, last_qty, last_price, cum_qty, leaves_qty, "
                     "cum_notional, liquidity, trade_id, fee, reason")
TRADE_COLUMNS = ("symbol, trade_id, seq, ts, price, qty, taker_side, maker_order_id, "
                 "taker_order_id")
CANDLE_COLUMNS = ("open_time, close_time, open, high, low, close, volume, quote_volume, "
                  "trades, closed")
BALANCE_COLUMNS = "shard, account, asset, available, held, seq, ts"
GAP_COLUMNS = "stream, after_id, first_id, lost_from_seq, lost_to_seq, noted_ts"
OPEN_STATUSES = "('new', 'partially_filled', 'untriggered')"
"""Statuses of an open order (an untriggered stop is one), as the partial index
``orders_open`` is written (the text must be the same for the index to serve)."""

Row = tuple[Any, ...]


def order_row(r: Row) -> OrderRow:
    return OrderRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                    None if r[10] is None else int(r[10]), r[11], r[12], int(r[13]), int(r[14]),
                    r[15], r[16], r[17], r[18], r[19], r[20], r[21], r[22], r[23])


def execution_row(r: Row) -> ExecutionRow:
    return ExecutionRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                        r[11], r[12], r[13], r[14], r[15], int(r[16]), r[17], r[18], int(r[19]),
                        r[20])


def trade_row(r: Row) -> TradeRow:
    return TradeRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])


def candle_row(r: Row) -> Candle:
    return Candle(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), r[8], bool(r[9]))


def number_at(ms: int) -> int:
    """The lowest order number of an order id at ``ms``; clamped to ``0..MAX_KEY``. O(1)."""
    if ms < ORDER_NUMBER_EPOCH_MS:
        return 0
    try:
        return order_number(f"{ms}-0")
    except ValueError:
        return MAX_KEY


class Queries:
    """Reads of the history database. Subclasses provide :meth:`_fetch`."""

    def _fetch(self, sql: str, params: Sequence[object]) -> list[Row]:
        """Rows of one ``SELECT`` written with ``?`` placeholders."""
        raise NotImplementedError

    # -- orders ---------------------------------------------------------------------

    def order(self, symbol: str, account: str, *, order_id: str | None = None,
              order_number: int | None = None, client_order_id: str | None = None
              ) -> OrderRow | None:
        """``account``'s order in ``symbol`` by exactly one of its ids, or None.

        By ``client_order_id``: the latest order that had it (a client id is unique only
        among open orders). Cost: one index lookup. Raises ``ValueError`` unless exactly
        one id is given.
        """
        given = [x is not None for x in (order_id, order_number, client_order_id)]
        if sum(given) != 1:
            raise ValueError("order: give exactly one of order_id, order_number, "
                             "client_order_id")
        base = f"SELECT {ORDER_COLUMNS} FROM orders WHERE "
        if order_id is not None:
            rows = self._fetch(base + "symbol = ? AND order_id = ? AND account = ?",
                               (symbol, order_id, account))
        elif order_number is not None:
            rows = self._fetch(base + "account = ? AND symbol = ? AND order_number = ?",
                               (account, symbol, order_number))
        else:
            rows = self._fetch(base + "account = ? AND symbol = ? AND client_order_id = ? "
                               "ORDER BY order_number DESC LIMIT 1",
                               (account, symbol, client_order_id))
        return order_row(rows[0]) if rows else None

    def orders(self, symbol: str, account: str, *, from_number: int | None = None,
               start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
               ) -> list[OrderRow]:
        """``account``'s orders in ``symbol``, ascending by ``order_number`` (Binance
        ``allOrders``): from ``from_number`` (``orderId``, inclusive) and/or created
        within ``start_ms..end_ms``; without ``from_number`` and ``start_ms`` the latest
        ``limit``. Cost: one range of ``orders_by_number``, O(limit)."""
        if limit < 1:
            return []
        lo = number_at(start_ms) if start_ms is not None else 0
        if from_number is not None:
            lo = max(lo, from_number)
        hi = number_at(end_ms + 1) - 1 if end_ms is not None else MAX_KEY
        ascending = from_number is not None or start_ms is not None
        rows = self._fetch(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account = ? AND symbol = ? "
            "AND order_number >= ? AND order_number <= ? "
            f"ORDER BY order_number {'' if ascending else 'DESC '}LIMIT ?",
            (account, symbol, lo, hi, limit))
        if not ascending:
            rows.reverse()
        return [order_row(r) for r in rows]

    def open_orders(self, symbol: str | None, account: str) -> list[OrderRow]:
        """``account``'s open orders (``new``, ``partially_filled``, ``untriggered``) in
        ``symbol`` (None: every market), by symbol and ``order_number``. Cost: one range
        of the partial index ``orders_open``, O(open orders). As of what history has
        written: it may trail the live order view of the gateway."""
        if symbol is None:
            rows = self._fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE account = ? AND "
                               f"status IN {OPEN_STATUSES} ORDER BY symbol, order_number",
                               (account,))
        else:
            rows = self._fetch(f"SELECT {ORDER_COLUMNS} FROM orders WHERE account = ? AND "
                               f"symbol = ? AND status IN {OPEN_STATUSES} "
                               "ORDER BY order_number", (account, symbol))
        return [order_row(r) for r in rows]

    # -- trades ---------------------------------------------------------------------

    def my_trades(self, symbol: str, account: str, *, start_ms: int | None = None,
                  end_ms: int | None = None, from_trade_id: int | None = None,
                  limit: int = 500) -> list[ExecutionRow]:
        """``account``'s fills in ``symbol`` (trade executions, with this fill's fee and
        liquidity), ascending by ``(trade_id, seq)`` (Binance ``myTrades``; a self-trade
        gives two rows of one trade id). Cost: the time bounds' two lookups in
        ``trades_by_time``, then one range of ``executions_my_trades``."""
        window = self._trade_window(symbol, start_ms, end_ms, from_trade_id, limit)
        if window is None:
            return []
        lo, hi, ascending = window
        rows = self._fetch(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE account = ? AND symbol = ? "
            "AND trade_id IS NOT NULL AND trade_id >= ? AND trade_id <= ? "
            f"ORDER BY trade_id{'' if ascending else ' DESC'}, seq{'' if ascending else ' DESC'}"
            " LIMIT ?", (account, symbol, lo, hi, limit))
        if not ascending:
            rows.reverse()
        return [execution_row(r) for r in rows]

    def _trade_window(self, symbol: str, start_ms: int | None, end_ms: int | None,
                      from_trade_id: int | None, limit: int) -> tuple[int, int, bool] | None:
        """Binance's paging of trade ids: ``(lo, hi, ascending)`` — ascending from ``lo``
        with ``fromId`` or ``startTime``, else the latest up to ``hi``; None if nothing can
        match. Cost: the time bounds' lookups in ``trades_by_time``."""
        if limit < 1:
            return None
        bounds = self._trade_id_bounds(symbol, start_ms, end_ms)
        if bounds is None:
            return None
        lo, hi = bounds
        if from_trade_id is not None:
            lo = max(lo, from_trade_id)
        return lo, hi, from_trade_id is not None or start_ms is not None

    def trades(self, symbol: str, *, from_trade_id: int | None = None,
               start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
               ) -> list[TradeRow]:
        """``symbol``'s public trades ascending by ``trade_id`` (Binance ``trades``,
        ``historicalTrades`` and, one trade per aggregate, ``aggTrades``). Cost: the time
        bounds' lookups, then one range of the primary key, O(limit)."""
        window = self._trade_window(symbol, start_ms, end_ms, from_trade_id, limit)
        if window is None:
            return []
        lo, hi, ascending = window
        rows = self._fetch(
            f"SELECT {TRADE_COLUMNS} FROM trades WHERE symbol = ? AND trade_id >= ? "
            f"AND trade_id <= ? ORDER BY trade_id{'' if ascending else ' DESC'} LIMIT ?",
            (symbol, lo, hi, limit))
        if not ascending:
            rows.reverse()
        return [trade_row(r) for r in rows]

    def last_trades(self, symbol: str, n: int) -> list[TradeRow]:
        """The last ``n`` trades of ``symbol``, oldest first (the feed's start-up
        snapshot). Cost: one backward range of the primary key, O(n)."""
        return self.trades(symbol, limit=n)

    def last_trade_id(self, symbol: str) -> int:
        """The highest trade id written for ``symbol``; 0 if none. Cost: one lookup."""
        rows = self._fetch("SELECT trade_id FROM trades WHERE symbol = ? "
                           "ORDER BY trade_id DESC LIMIT 1", (symbol,))
        return int(rows[0][0]) if rows else 0

    def _trade_id_bounds(self, symbol: str, start_ms: int | None, end_ms: int | None
                         ) -> tuple[int, int] | None:
        """Trade ids of ``symbol``'s trades within the times (None if there are none)."""
        lo, hi = 0, MAX_KEY
        if start_ms is not None:
            rows = self._fetch("SELECT trade_id FROM trades WHERE symbol = ? AND ts >= ? "
                               "ORDER BY ts, trade_id LIMIT 1", (symbol, start_ms))
            if not rows:
                return None
            lo = rows[0][0]
        if end_ms is not None:
            rows = self._fetch("SELECT trade_id FROM trades WHERE symbol = ? AND ts <= ? "
                               "ORDER BY ts DESC, trade_id DESC LIMIT 1", (symbol, end_ms))
            if not rows:
                return None
            hi = rows[0][0]
        return (lo, hi) if lo <= hi else None

    # -- candles --------------------------------------------------------------------

    def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
               end_ms: int | None = None, limit: int = 500) -> list[Candle]:
        """``symbol``'s candles of ``interval`` (a key of ``candles.core.INTERVALS``) whose
        ``open_time`` is within ``start_ms..end_ms``, ascending (Binance ``klines``;
        intervals without trades have none). Cost: one range of the primary key,
        O(limit). Raises ``ValueError`` for an unknown interval."""
        if interval not in INTERVALS:
            raise ValueError(f"interval: {interval!r} is not one of {', '.join(INTERVALS)}")
        if limit < 1:
            return []
        ascending = start_ms is not None
        rows = self._fetch(
            f"SELECT {CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? "
            "AND open_time >= ? AND open_time <= ? "
            f"ORDER BY open_time{'' if ascending else ' DESC'} LIMIT ?",
            (symbol, interval, start_ms if start_ms is not None else -MAX_KEY,
             end_ms if end_ms is not None else MAX_KEY, limit))
        if not ascending:
            rows.reverse()
        return [candle_row(r) for r in rows]

    def minute_candles(self, symbol: str, since_ms: int) -> list[Candle]:
        """``symbol``'s one-minute candles opening at or after ``since_ms``, oldest first
        (``candles.core.Rolling24h.load`` at the feed's start). Cost: one range of the
        primary key, O(candles) <= 1,440 for a day."""
        rows = self._fetch(f"SELECT {CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND "
                           "interval = '1m' AND open_time >= ? ORDER BY open_time",
                           (symbol, since_ms))
        return [candle_row(r) for r in rows]

    # -- balances, positions, gaps ----------------------------------------------------

    def balances(self, account: str) -> list[BalanceRow]:
        """``account``'s latest balance of every asset it has touched, by asset, summed over
        the risk shards (each shard credits the fee account its own row). Cost: one range
        of the primary key."""
        rows = self._fetch(f"SELECT {BALANCE_COLUMNS} FROM balances WHERE account = ? "
                           "ORDER BY asset, shard", (account,))
        out: list[BalanceRow] = []
        for _shard, acct, asset, available, held, _seq, ts in rows:
            if out and out[-1].asset == asset:
                last = out[-1]
                out[-1] = BalanceRow(acct, asset, last.available + int(available),
                                     last.held + int(held), max(last.ts, ts))
            else:
                out.append(BalanceRow(acct, asset, int(available), int(held), ts))
        return out

    def position(self, stream: str) -> tuple[str, int] | None:
        """``(last_id, last_seq)`` written for ``stream`` (a symbol or ``acct-K``), or None
        if nothing was. Cost: one lookup."""
        rows = self._fetch("SELECT last_id, last_seq FROM stream_positions WHERE stream = ?",
                           (stream,))
        return (rows[0][0], int(rows[0][1])) if rows else None

    def gaps(self) -> list[GapRow]:
        """Every gap noted (what retention trimmed before history read it), by stream and
        seq. Cost: O(gaps)."""
        rows = self._fetch(f"SELECT {GAP_COLUMNS} FROM gaps ORDER BY stream, lost_from_seq",
                           ())
        return [GapRow(*r) for r in rows]

"""One market's public feed state: engine events in, encoded messages out.

Sans-I/O. :meth:`MarketFeed.restore` loads an engine snapshot;
:meth:`MarketFeed.apply` takes the events of one ``sx:{SYM}:out`` entry (one
engine commit) and returns a :class:`Batch` holding what to publish: per book
depth one update, one trades message with all the batch's trades, one ticker
when best bid/ask, last trade or the 24-hour statistics changed, and per
candle interval one update with the candles the batch changed. Every message
is encoded at most once and the same ``bytes`` go to every subscriber of that
stream.

The book state is nothing but what the snapshot and the stream rebuild: the
L2 book, the last engine ``seq``, the last trade, and per depth the ``seq`` of
the last message of that depth's stream (which the next update's ``prev_seq``
names and a fresh snapshot carries, so the two chain).

History (PROTOCOL.md section C) is counted from trades with
``candles.core`` (the implementation the history database uses too): per
interval a :class:`~candles.core.CandleSeries`, a
:class:`~candles.core.Rolling24h` and the last trades. It is seeded from the
history database (:meth:`MarketFeed.seed`, :meth:`MarketFeed.catch_up`) and
counts only trades with ``trade_id`` above :attr:`MarketFeed.history_trade_id`,
so a trade is never counted twice. The market's clock :attr:`MarketFeed.ts`
is the ``ts`` of the last event applied; a candle closes when a trade opens a
later interval or that clock passes its ``close_time``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from candles.core import INTERVALS, MINUTE_MS, Candle, CandleSeries, Rolling24h, Stats24h
from contract import market_data as wire
from contract.commands import Side
from contract.events import BookUpdate, Event, Trade
from contract.ids import ts_of
from contract.market import Market
from contract.market_data import CANDLES_SNAPSHOT, DEPTHS, TRADES_SNAPSHOT
from contract.snapshot import Snapshot
from contract.wire import encode
from marketdata.formatter import PriceFormatter
from marketdata.l2book import L2Book, Level, WindowChange, window_diff

CHECKSUM_LEVELS = 10
NEVER = 2**63
"""A close time no clock reaches: no candle is open."""

RecentTrade = tuple[int, int, int, Side, int]
"""A trade kept for the ``trades`` snapshot: ``(trade_id, ticks, lots, taker_side, ts)``."""


class SeqGap(Exception):
    """Events are missing before this entry (the stream was trimmed): restore a snapshot."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected event seq {expected}, got {got}")
        self.expected = expected
        self.got = got


class Batch:
    """What one applied entry (or a snapshot reload) publishes; encodes lazily, once.

    Call :meth:`book`, :meth:`trades` and :meth:`ticker` right after the
    ``apply`` that produced it (before the next one): they read the formatter
    and the checksum computed then.
    """

    __slots__ = ("_feed", "book_changes", "checksum", "trade_events", "trade_seq",
                 "ticker_changed", "candles_touched", "candles_closed", "seq", "ts",
                 "_book_bytes", "_trades_bytes", "_candle_bytes")

    def __init__(self, feed: MarketFeed) -> None:
        self._feed = feed
        self.book_changes: dict[int, tuple[int, int, WindowChange]] = {}
        """depth -> (prev_seq, seq, changes)."""
        self.checksum = 0
        self.trade_events: list[Trade] = []
        """The batch's trades not yet counted before (published on ``trades``)."""
        self.trade_seq = 0
        self.ticker_changed = False
        self.candles_touched = False
        """Whether trades were counted: then every interval's current candle changed."""
        self.candles_closed: list[tuple[str, Candle]] | None = None
        """(interval, candle) of the candles the batch closed, in order."""
        self.seq = feed.seq
        self.ts = feed.ts
        self._book_bytes: dict[int, bytes] = {}
        self._trades_bytes: bytes | None = None
        self._candle_bytes: dict[str, bytes] | None = None

    def book(self, depth: int) -> bytes | None:
        """The depth's book update, or None when its window did not change."""
        data = self._book_bytes.get(depth)
        if data is None:
            change = self.book_changes.get(depth)
            if change is None:
                return None
            prev_seq, seq, window = change
            fmt = self._feed.fmt
            data = self._book_bytes[depth] = encode(wire.BookUpdate(
                "book", "update", self._feed.symbol, seq, prev_seq,
                fmt.levels(window.bids), fmt.levels(window.asks), self.checksum, self.ts))
        return data

    def trades(self) -> bytes | None:
        """All trades of the batch in one message, or None when there were none."""
        if not self.trade_events:
            return None
        if self._trades_bytes is None:
            fmt = self._feed.fmt
            data = [wire.TradeData(t.trade_id, fmt.price(t.price), fmt.qty(t.qty), t.taker_side,
                                   t.ts) for t in self.trade_events]
            self._trades_bytes = encode(wire.Trades(
                "trades", "update", self._feed.symbol, self.trade_seq, data))
        return self._trades_bytes

    def ticker(self) -> bytes | None:
        """The new ticker, or None when it did not change."""
        return self._feed.ticker_message("update") if self.ticker_changed else None

    def candles(self, interval: str) -> bytes | None:
        """The interval's ``candles`` update (the candles the batch changed), or None."""
        changed = self.changed_candles(interval)
        if not changed:
            return None
        cache = self._candle_bytes
        if cache is None:
            cache = self._candle_bytes = {}
        data = cache.get(interval)
        if data is None:
            feed = self._feed
            data = cache[interval] = encode(wire.Candles(
                "candles", "update", feed.symbol, interval, self.seq,
                [feed.candle_data(c) for c in changed]))
        return data

    def changed_candles(self, interval: str) -> list[Candle]:
        """The interval's candles the batch changed, oldest first, each once: the ones it
        closed, then the current one if trades were counted. O(candles closed)."""
        closed = self.candles_closed
        out = [c for name, c in closed if name == interval] if closed else []
        if self.candles_touched:
            current = self._feed.series[interval].current
            if current is not None and not (out and out[-1] is current):
                out.append(current)
        return out

    @property
    def empty(self) -> bool:
        return not (self.book_changes or self.trade_events or self.ticker_changed
                    or self.candles_touched or self.candles_closed)


class MarketFeed:
    """L2 book, trades, ticker and candles of one market, rebuilt from snapshot + events.

    Drive it with :meth:`restore` (start, or after a :class:`SeqGap`) and
    :meth:`apply` (each ``:out`` entry in order); at start, before the first
    :meth:`apply`, seed the history with :meth:`seed` and :meth:`catch_up`.
    Answer subscriptions with :meth:`book_snapshot`, :meth:`ticker_message`,
    :meth:`trades_snapshot` and :meth:`candles_snapshot`.
    """

    def __init__(self, market: Market, depths: tuple[int, ...] = DEPTHS,
                 intervals: dict[str, int] = INTERVALS) -> None:
        self.market = market
        self.symbol = market.symbol
        self.fmt = PriceFormatter(market)
        self.depths = depths
        self.book = L2Book()
        self.seq = 0
        """Engine seq of the last event applied."""
        self.ts = 0
        """The market's clock: the largest ``ts`` of the events applied (0: none yet)."""
        self.trade_id = 0
        self.last_trade: tuple[int, int] | None = None
        """(price ticks, qty lots) of the last trade, if known."""
        self.book_seq: dict[int, int] = dict.fromkeys(depths, 0)
        self.ticker_seq = 0
        self.series = {name: CandleSeries(width, CANDLES_SNAPSHOT)
                       for name, width in intervals.items()}
        """interval -> its candles (the current one and the last closed ones)."""
        self.rolling = Rolling24h()
        self.stats: Stats24h | None = None
        """The 24-hour statistics at :attr:`ts`."""
        self.recent: deque[RecentTrade] = deque(maxlen=TRADES_SNAPSHOT)
        self.history_trade_id = 0
        """The highest trade id counted in candles, 24 h and :attr:`recent`."""
        self._series_items = tuple(self.series.items())
        self._narrowest = min(self.series.values(), key=lambda s: s.width, default=None)
        self._next_close = NEVER
        """No open candle closes before this (a lower bound: checked when passed)."""
        self._stats_minute = -1
        """The clock's minute :attr:`stats` was computed in (the window moves by minutes)."""
        self._ticker_key = self._ticker_state()
        self._snapshots: dict[int, bytes] = {}
        self._ticker_bytes: dict[str, bytes] = {}
        self._trades_snapshot: bytes | None = None
        self._candle_snapshots: dict[str, bytes] = {}
        self._closed_wire: dict[str, tuple[Candle | None, list[wire.CandleData]]] = {}
        self._cached_at = (0, 0)
        """(seq, ts) the snapshot caches were made at; they carry both."""

    # -- input ----------------------------------------------------------------

    def apply(self, events: list[Event]) -> Batch:
        """Apply one ``:out`` entry's events (seq order); return what to publish.

        Events already applied (seq <= :attr:`seq`) are skipped. Raises
        :class:`SeqGap` when the first new event does not follow :attr:`seq`
        (the state is then unchanged). O(events + changed levels).
        """
        batch = Batch(self)
        expected = self.seq + 1
        start = 0
        while start < len(events) and events[start].seq < expected:
            start += 1
        for i in range(start, len(events)):
            if events[i].seq != expected + i - start:
                raise SeqGap(expected + i - start, events[i].seq)
        if start == len(events):
            return batch
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        book_seq = 0
        trades: list[Trade] = []
        for i in range(start, len(events)):
            e = events[i]
            t = type(e)
            if t is BookUpdate:
                for p, q in e.bids:  # type: ignore[union-attr]
                    bid_changes[p] = q
                for p, q in e.asks:  # type: ignore[union-attr]
                    ask_changes[p] = q
                book_seq = e.seq
            elif t is Trade:
                trades.append(e)  # type: ignore[arg-type]
        last_event = events[-1]
        batch.seq = self.seq = last_event.seq
        if last_event.ts > self.ts:
            self.ts = last_event.ts
        batch.ts = self.ts
        if bid_changes or ask_changes:
            changes = self.book.apply(bid_changes, ask_changes, self.depths)
            self._publish_book(batch, changes, book_seq)
        if trades:
            last = trades[-1]
            self.trade_id = last.trade_id
            self.last_trade = (last.price, last.qty)
            batch.trade_seq = last.seq
            if last.trade_id > self.history_trade_id:
                batch.trade_events = self._count(trades, batch)
                self._stats_minute = -1
        if self.ts > self._next_close:
            self._close_candles(batch)
        minute = self.ts // MINUTE_MS
        if minute != self._stats_minute:
            self._stats_minute = minute
            self.stats = self.rolling.stats(self.ts)
        self._update_ticker(batch, max(book_seq, batch.trade_seq))
        return batch

    def _count(self, trades: list[Trade], batch: Batch | None) -> list[Trade]:
        """Count the trades above :attr:`history_trade_id` in the candles, 24 h and recent
        trades; note in ``batch`` the candles changed. Returns the trades counted.
        O(trades x intervals)."""
        hid = self.history_trade_id
        if trades[0].trade_id <= hid:
            trades = [t for t in trades if t.trade_id > hid]
            if not trades:
                return trades
        rolling_add = self.rolling.add
        recent_append = self.recent.append
        items = self._series_items
        closed: list[tuple[str, Candle]] | None = None
        for t in trades:
            ts, price, qty = t.ts, t.price, t.qty
            rolling_add(ts, price, qty)
            recent_append((t.trade_id, price, qty, t.taker_side, ts))
            for name, series in items:
                c = series.count(ts, price, qty)
                if c is not None:  # the trade opened a later candle (rare)
                    if closed is None:
                        closed = []
                    closed.append((name, c))
        self.history_trade_id = trades[-1].trade_id
        if batch is not None:
            batch.candles_touched = True
            if closed:
                batch.candles_closed = closed
        narrowest = self._narrowest
        if narrowest is not None and narrowest.current is not None:
            # Every current candle holds the latest trade; the narrowest closes first.
            self._next_close = min(self._next_close, narrowest.current.close_time)
        return trades

    def _close_candles(self, batch: Batch | None) -> None:
        """Close the candles whose close_time the clock passed (noted in ``batch``).
        O(intervals)."""
        ts = self.ts
        next_close = NEVER
        for name, series in self._series_items:
            closed = series.close_until(ts)
            if closed is not None and batch is not None:
                if batch.candles_closed is None:
                    batch.candles_closed = []
                batch.candles_closed.append((name, closed))
            current = series.current
            if current is not None and not current.closed and current.close_time < next_close:
                next_close = current.close_time
        self._next_close = next_close

    # -- history: seeding at start-up ------------------------------------------------

    def seed(self, candles: dict[str, list[Candle]], minutes: Iterable[Candle],
             trades: Iterable[RecentTrade], last_trade_id: int) -> None:
        """Start the history from the database: each interval's last candles (oldest
        first; the last one is the current candle), the one-minute candles of the
        24-hour window, the last trades (oldest first), and the id of the last trade
        all of them count. Call before the first :meth:`apply` (after :meth:`restore`);
        then :meth:`catch_up` with the trades between the database and the snapshot.
        O(candles + minutes + trades)."""
        for name, series in self._series_items:
            series.load(candles.get(name, []))
        self.rolling.load(minutes)
        self.recent.clear()
        self.recent.extend(trades)
        self.history_trade_id = last_trade_id
        if self.recent:
            newest = self.recent[-1]
            if newest[4] > self.ts:
                self.ts = newest[4]
            if self.last_trade is None and newest[0] == self.trade_id:
                self.last_trade = (newest[1], newest[2])  # the snapshot's last trade
        self._next_close = min((s.current.close_time for s in self.series.values()
                                if s.current is not None and not s.current.closed),
                               default=NEVER)
        if self.ts > self._next_close:
            self._close_candles(None)
        self._refresh_stats()
        self._refresh_ticker()

    def catch_up(self, trades: list[Trade]) -> int:
        """Count trades the database does not have yet but the engine snapshot already
        covers (read from ``:out`` before the snapshot's position), in order; those at or
        below :attr:`history_trade_id` are skipped. Nothing is published. Returns how
        many were counted. O(trades x intervals)."""
        if not trades or trades[-1].trade_id <= self.history_trade_id:
            return 0
        counted = self._count(trades, None)
        newest = counted[-1]
        if newest.ts > self.ts:
            self.ts = newest.ts
        if self.last_trade is None and newest.trade_id == self.trade_id:
            self.last_trade = (newest.price, newest.qty)  # the snapshot's last trade
        if self.ts > self._next_close:
            self._close_candles(None)
        self._refresh_stats()
        self._refresh_ticker()
        return len(counted)

    def restore(self, snap: Snapshot, last_trade: tuple[int, int] | None) -> Batch:
        """Replace the state by an engine snapshot; return the changes as updates.

        Subscribers keep their chains: each depth whose window differs gets an
        update (``seq`` = the snapshot's) turning the old window into the new
        one. ``last_trade`` is the last trade at or before the snapshot, if
        known (the snapshot does not hold it). Untriggered stops are not in the book and
        an iceberg counts its visible slice only. O(orders + sum of depths).
        """
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for o in snap.orders:
            if o.untriggered:
                continue
            side = bids if o.side == "buy" else asks
            shown = o.visible if o.display_qty else o.qty - o.cum_qty
            side[o.price] = side.get(o.price, 0) + shown
        depths = self.depths
        before = {d: (self.book.top("buy", d), self.book.top("sell", d)) for d in depths}
        self.book.load(bids.items(), asks.items())
        changes: dict[int, WindowChange] = {}
        for d in depths:
            old_bids, old_asks = before[d]
            bid_diff = window_diff(old_bids, self.book.top("buy", d))
            ask_diff = window_diff(old_asks, self.book.top("sell", d))
            if bid_diff or ask_diff:
                changes[d] = WindowChange(sorted(bid_diff, key=_neg_price), sorted(ask_diff))
        self.seq = snap.seq
        if snap.last_input_id != "0-0":
            self.ts = max(self.ts, ts_of(snap.last_input_id))  # the last command's time
        batch = Batch(self)
        if last_trade is not None or snap.trade_id != self.trade_id:
            self.last_trade = last_trade
        self.trade_id = snap.trade_id
        self._publish_book(batch, changes, snap.seq)
        if self.ts > self._next_close:
            self._close_candles(batch)
        self._refresh_stats()
        self._update_ticker(batch, snap.seq)
        return batch

    def _refresh_stats(self) -> None:
        """:attr:`stats` at the clock now (after a jump of the clock or a seeding). O(1440)."""
        self._stats_minute = self.ts // MINUTE_MS
        self.stats = self.rolling.stats(self.ts)

    def _publish_book(self, batch: Batch, changes: dict[int, WindowChange], seq: int) -> None:
        if not changes:
            return
        book_seq = self.book_seq
        for d, window in changes.items():
            batch.book_changes[d] = (book_seq[d], seq, window)
            book_seq[d] = seq
            self._snapshots.pop(d, None)
        top_asks = self.fmt.levels(self.book.top("sell", CHECKSUM_LEVELS))
        top_bids = self.fmt.levels(self.book.top("buy", CHECKSUM_LEVELS))
        batch.checksum = wire.checksum(top_asks, top_bids)

    def _ticker_state(self) -> tuple[Level | None, Level | None, tuple[int, int] | None,
                                     Stats24h | None]:
        return self.book.best("buy"), self.book.best("sell"), self.last_trade, self.stats

    def _update_ticker(self, batch: Batch, seq: int) -> None:
        key = self._ticker_state()
        if key != self._ticker_key:
            self._ticker_key = key
            self.ticker_seq = seq
            self._ticker_bytes.clear()
            batch.ticker_changed = True

    def _refresh_ticker(self) -> None:
        """Take the ticker's values as they are now and drop every cached snapshot
        (seeding: nothing is published)."""
        self._ticker_key = self._ticker_state()
        self._cached_at = (-1, -1)

    # -- output for new subscribers ---------------------------------------------

    def _fresh(self) -> None:
        """Drop the snapshot caches made before the last event: they carry ``seq``/``ts``."""
        now = (self.seq, self.ts)
        if now != self._cached_at:
            self._cached_at = now
            self._snapshots.clear()
            self._ticker_bytes.clear()
            self._trades_snapshot = None
            self._candle_snapshots.clear()

    def book_snapshot(self, depth: int) -> bytes:
        """The top ``depth`` levels as a ``book`` snapshot, chaining with the next update.

        Its ``seq`` is the depth stream's last message seq, its ``ts`` the
        market's clock. Cached until the next event. O(depth) when rebuilt.
        """
        self._fresh()
        data = self._snapshots.get(depth)
        if data is None:
            fmt = self.fmt
            bids = fmt.levels(self.book.top("buy", depth))
            asks = fmt.levels(self.book.top("sell", depth))
            data = self._snapshots[depth] = encode(wire.BookSnapshot(
                "book", "snapshot", self.symbol, self.book_seq[depth], bids, asks,
                wire.checksum(asks, bids), self.ts))
        return data

    def ticker_message(self, kind: str = "snapshot") -> bytes:
        """The current ticker (``type`` = ``kind``), with the 24-hour statistics at
        :attr:`ts`. Cached until the next event. O(1)."""
        self._fresh()
        data = self._ticker_bytes.get(kind)
        if data is None:
            best_bid, best_ask, last, stats = self._ticker_key
            fmt = self.fmt
            market = self.market
            data = self._ticker_bytes[kind] = encode(wire.Ticker(
                "ticker", kind, self.symbol, self.ticker_seq,
                None if best_bid is None else fmt.price(best_bid[0]),
                None if best_bid is None else fmt.qty(best_bid[1]),
                None if best_ask is None else fmt.price(best_ask[0]),
                None if best_ask is None else fmt.qty(best_ask[1]),
                None if last is None else fmt.price(last[0]),
                None if last is None else fmt.qty(last[1]),
                None if stats is None else fmt.price(stats.open),
                None if stats is None else fmt.price(stats.high),
                None if stats is None else fmt.price(stats.low),
                market.format_qty(0 if stats is None else stats.volume),
                self.quote_amount(0 if stats is None else stats.quote_volume),
                self.ts))
        return data

    def trades_snapshot(self) -> bytes:
        """The last trades (at most ``TRADES_SNAPSHOT``, oldest first) as a ``trades``
        snapshot; ``seq`` is the last event applied. Cached until the next event.
        O(trades) when rebuilt."""
        self._fresh()
        data = self._trades_snapshot
        if data is None:
            fmt = self.fmt
            data = self._trades_snapshot = encode(wire.Trades(
                "trades", "snapshot", self.symbol, self.seq,
                [wire.TradeData(tid, fmt.price(p), fmt.qty(q), side, ts)
                 for tid, p, q, side, ts in self.recent]))
        return data

    def candles_snapshot(self, interval: str) -> bytes:
        """The interval's last ``CANDLES_SNAPSHOT`` candles (oldest first, the current one
        included) as a ``candles`` snapshot. Raises KeyError for an interval not served.
        Cached until the next event; the closed candles' wire form is kept until one
        more closes, so a rebuild formats one candle and encodes the list."""
        self._fresh()
        data = self._candle_snapshots.get(interval)
        if data is None:
            series = self.series[interval]
            last_closed = series.closed[-1] if series.closed else None
            kept = self._closed_wire.get(interval)
            if kept is None or kept[0] is not last_closed:
                kept = self._closed_wire[interval] = (
                    last_closed, [self.candle_data(c) for c in series.closed])
            candles = list(kept[1])
            if series.current is not None:
                candles.append(self.candle_data(series.current))
            data = self._candle_snapshots[interval] = encode(wire.Candles(
                "candles", "snapshot", self.symbol, interval, self.seq,
                candles[-CANDLES_SNAPSHOT:]))
        return data

    def candle_data(self, c: Candle) -> wire.CandleData:
        """One candle in wire form: prices with the tick's decimals, volume with the lot's,
        quote volume with the quote asset's. O(1)."""
        price = self.fmt.price
        return wire.CandleData(c.open_time, c.close_time, price(c.open), price(c.high),
                               price(c.low), price(c.close), self.market.format_qty(c.volume),
                               self.quote_amount(c.quote_volume), c.trades, c.closed)

    def quote_amount(self, notional: int) -> str:
        """``sum(ticks x lots)`` as a quote amount string (the quote asset's decimals), exact."""
        market = self.market
        return market.format_quote(notional * market.quote_per_tick_lot)


def _neg_price(level: Level) -> int:
    return -level[0]

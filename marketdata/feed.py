"""One market's public feed state: engine events in, encoded messages out.

Sans-I/O. :meth:`MarketFeed.restore` loads an engine snapshot;
:meth:`MarketFeed.apply` takes the events of one ``sx:{SYM}:out`` entry (one
engine commit) and returns a :class:`Batch` holding what to publish: per book
depth one update, one trades message with all the batch's trades, one ticker
when best bid/ask or last trade changed. Every message is encoded at most once
and the same ``bytes`` go to every subscriber of that stream.

The state is nothing but what the snapshot and the stream rebuild: the L2
book, the last engine ``seq``, the last trade, and per depth the ``seq`` of the
last message of that depth's stream (which the next update's ``prev_seq``
names and a fresh snapshot carries, so the two chain).
"""

from __future__ import annotations

from contract import market_data as wire
from contract.events import BookUpdate, Event, Trade
from contract.market import Market
from contract.market_data import DEPTHS
from contract.snapshot import Snapshot
from contract.wire import encode
from marketdata.formatter import PriceFormatter
from marketdata.l2book import L2Book, Level, WindowChange, window_diff

CHECKSUM_LEVELS = 10


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
                 "ticker_changed", "_book_bytes", "_trades_bytes")

    def __init__(self, feed: MarketFeed) -> None:
        self._feed = feed
        self.book_changes: dict[int, tuple[int, int, WindowChange]] = {}
        """depth -> (prev_seq, seq, changes)."""
        self.checksum = 0
        self.trade_events: list[Trade] = []
        self.trade_seq = 0
        self.ticker_changed = False
        self._book_bytes: dict[int, bytes] = {}
        self._trades_bytes: bytes | None = None

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
                fmt.levels(window.bids), fmt.levels(window.asks), self.checksum))
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

    @property
    def empty(self) -> bool:
        return not (self.book_changes or self.trade_events or self.ticker_changed)


class MarketFeed:
    """L2 book, trades and ticker of one market, rebuilt from snapshot + events.

    Drive it with :meth:`restore` (start, or after a :class:`SeqGap`) and
    :meth:`apply` (each ``:out`` entry in order); answer subscriptions with
    :meth:`book_snapshot` and :meth:`ticker_message`.
    """

    def __init__(self, market: Market, depths: tuple[int, ...] = DEPTHS) -> None:
        self.market = market
        self.symbol = market.symbol
        self.fmt = PriceFormatter(market)
        self.depths = depths
        self.book = L2Book()
        self.seq = 0
        """Engine seq of the last event applied."""
        self.trade_id = 0
        self.last_trade: tuple[int, int] | None = None
        """(price ticks, qty lots) of the last trade, if known."""
        self.book_seq: dict[int, int] = dict.fromkeys(depths, 0)
        self.ticker_seq = 0
        self._ticker_key = self._ticker_state()
        self._snapshots: dict[int, bytes] = {}
        self._ticker_bytes: dict[str, bytes] = {}

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
        trades = batch.trade_events
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
        self.seq = events[-1].seq
        if bid_changes or ask_changes:
            changes = self.book.apply(bid_changes, ask_changes, self.depths)
            self._publish_book(batch, changes, book_seq)
        if trades:
            last = trades[-1]
            self.trade_id = last.trade_id
            self.last_trade = (last.price, last.qty)
            batch.trade_seq = last.seq
        self._update_ticker(batch, max(book_seq, batch.trade_seq))
        return batch

    def restore(self, snap: Snapshot, last_trade: tuple[int, int] | None) -> Batch:
        """Replace the state by an engine snapshot; return the changes as updates.

        Subscribers keep their chains: each depth whose window differs gets an
        update (``seq`` = the snapshot's) turning the old window into the new
        one. ``last_trade`` is the last trade at or before the snapshot, if
        known (the snapshot does not hold it). O(orders + sum of depths).
        """
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for o in snap.orders:
            side = bids if o.side == "buy" else asks
            side[o.price] = side.get(o.price, 0) + o.qty - o.cum_qty
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
        batch = Batch(self)
        self.seq = snap.seq
        if last_trade is not None or snap.trade_id != self.trade_id:
            self.last_trade = last_trade
        self.trade_id = snap.trade_id
        self._publish_book(batch, changes, snap.seq)
        self._update_ticker(batch, snap.seq)
        return batch

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

    def _ticker_state(self) -> tuple[Level | None, Level | None, tuple[int, int] | None]:
        return self.book.best("buy"), self.book.best("sell"), self.last_trade

    def _update_ticker(self, batch: Batch, seq: int) -> None:
        key = self._ticker_state()
        if key != self._ticker_key:
            self._ticker_key = key
            self.ticker_seq = seq
            self._ticker_bytes.clear()
            batch.ticker_changed = True

    # -- output for new subscribers ---------------------------------------------

    def book_snapshot(self, depth: int) -> bytes:
        """The top ``depth`` levels as a ``book`` snapshot, chaining with the next update.

        Its ``seq`` is the depth stream's last message seq. Cached until the
        window changes. O(depth) when rebuilt.
        """
        data = self._snapshots.get(depth)
        if data is None:
            fmt = self.fmt
            bids = fmt.levels(self.book.top("buy", depth))
            asks = fmt.levels(self.book.top("sell", depth))
            data = self._snapshots[depth] = encode(wire.BookSnapshot(
                "book", "snapshot", self.symbol, self.book_seq[depth], bids, asks,
                wire.checksum(asks, bids)))
        return data

    def ticker_message(self, kind: str = "snapshot") -> bytes:
        """The current ticker (``type`` = ``kind``). Cached until it changes."""
        data = self._ticker_bytes.get(kind)
        if data is None:
            best_bid, best_ask, last = self._ticker_key
            fmt = self.fmt
            data = self._ticker_bytes[kind] = encode(wire.Ticker(
                "ticker", kind, self.symbol, self.ticker_seq,
                None if best_bid is None else fmt.price(best_bid[0]),
                None if best_bid is None else fmt.qty(best_bid[1]),
                None if best_ask is None else fmt.price(best_ask[0]),
                None if best_ask is None else fmt.qty(best_ask[1]),
                None if last is None else fmt.price(last[0]),
                None if last is None else fmt.qty(last[1])))
        return data


def _neg_price(level: Level) -> int:
    return -level[0]

"""Candles and rolling 24-hour statistics, computed from a market's trades alone.

Deterministic: the same trades, in ``seq`` order, always give the same
candles and statistics, whichever process computes them (the market-data
feed live, ``streamex history`` into the database). Prices are integer
ticks, ``volume`` is lots and ``quote_volume`` is ``sum(ticks * lots)``; the
caller formats them with the market's arithmetic.

Rules (PROTOCOL.md, section C):

- Intervals are UTC-aligned: the candle of a trade at ``ts`` ms opens at
  ``ts - ts % width`` and its ``close_time`` is ``open_time + width - 1``
  (Binance's convention). Intervals with no trade have no candle.
- A trade whose ``ts`` is before the current candle's ``open_time`` (the
  market's clock never goes back, but a caller may feed older trades) counts
  in the current candle: a closed candle never changes.
- A candle is ``closed`` once a trade of a later interval arrived
  (:meth:`CandleSeries.add`) or the market's clock passed its ``close_time``
  (:meth:`CandleSeries.close_until`, with the time of any later event of the
  market). Closing never changes a candle's numbers, only the flag.
- The 24-hour window at time ``now`` is the 1,440 one-minute buckets ending
  with the one holding ``now``: trades with ``ts >= floor_minute(now) -
  23h59m``. ``open_24h`` is the first trade's price in it, ``high``/``low``
  its extremes; an empty window has no statistics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import msgspec

INTERVALS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
"""Interval name -> width in ms, the ones the feed and REST serve."""

MINUTE_MS = 60_000
DAY_MINUTES = 1440
DAY_MS = DAY_MINUTES * MINUTE_MS


class Candle(msgspec.Struct, gc=False):
    """One interval's trades; ``closed`` once a trade of a later interval arrived or the
    market's clock passed ``close_time``."""

    open_time: int
    close_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    closed: bool = False

    def add(self, price: int, qty: int) -> None:
        """Count one trade in this candle. O(1)."""
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += qty
        self.quote_volume += price * qty
        self.trades += 1


def open_time_of(ts: int, width: int) -> int:
    """The open time of the ``width``-ms interval holding ``ts`` (UTC-aligned). O(1)."""
    return ts - ts % width


def new_candle(open_time: int, width: int, price: int, qty: int) -> Candle:
    """A candle opened by one trade. O(1)."""
    return Candle(open_time, open_time + width - 1, price, price, price, price, qty,
                  price * qty, 1)


class CandleSeries:
    """The candles of one market and interval: the current one plus the last ``keep``
    closed ones. :meth:`add` costs O(1)."""

    __slots__ = ("width", "closed", "current")

    def __init__(self, width: int, keep: int = 100) -> None:
        self.width = width
        self.closed: deque[Candle] = deque(maxlen=keep)
        self.current: Candle | None = None

    def add(self, ts: int, price: int, qty: int) -> list[Candle]:
        """Count a trade; returns the candles it changed, oldest first: the one it closed
        (if the trade opened a new interval and :meth:`close_until` had not closed it
        already) and the one it is in. The caller must not keep the returned objects
        past the next call if it needs them unchanged: the current candle is updated in
        place. O(1)."""
        closed = self.count(ts, price, qty)
        current = self.current
        assert current is not None
        return [current] if closed is None else [closed, current]

    def count(self, ts: int, price: int, qty: int) -> Candle | None:
        """Count a trade, as :meth:`add`, returning only the candle it closed (None
        mostly); the one it is in is :attr:`current`. O(1), no allocation unless the
        trade opens a candle: the hot path of a feed."""
        current = self.current
        if current is not None and ts <= current.close_time:
            current.add(price, qty)
            return None
        self.current = new_candle(open_time_of(ts, self.width), self.width, price, qty)
        if current is None:
            return None
        self.closed.append(current)
        if current.closed:
            return None
        current.closed = True
        return current

    def close_until(self, now_ms: int) -> Candle | None:
        """Mark the current candle closed if the market's clock ``now_ms`` passed its
        ``close_time``; returns it when that changed its flag, else None. O(1).

        The caller promises that no trade with ``ts <= now_ms`` follows (the time
        of a later event of the market: its clock never goes back).
        """
        current = self.current
        if current is None or current.closed or now_ms <= current.close_time:
            return None
        current.closed = True
        return current

    def load(self, candles: Iterable[Candle]) -> None:
        """Start from earlier candles (oldest first, e.g. the database's): the last one is
        the current candle (its ``closed`` flag kept), the others closed. Copies them.
        O(len)."""
        copies = [msgspec.structs.replace(c) for c in candles]
        for c in copies[:-1]:
            c.closed = True
        self.closed.clear()
        self.closed.extend(copies[:-1])
        self.current = copies[-1] if copies else None

    def last(self, n: int) -> list[Candle]:
        """The last ``n`` candles, oldest first, the current one included. O(n)."""
        out = list(self.closed)
        if self.current is not None:
            out.append(self.current)
        return out[-n:] if n > 0 else []


class Stats24h(msgspec.Struct, frozen=True, gc=False):
    """Rolling 24-hour statistics at one moment (ticks, lots, notional)."""

    open: int
    high: int
    low: int
    last: int
    volume: int
    quote_volume: int
    trades: int
    first_ts: int
    """Open time of the window's first minute with a trade."""


class Rolling24h:
    """Per-minute buckets of the last 24 hours of one market's trades.

    :meth:`add` is O(1) amortised (buckets older than the window are dropped as
    new ones open). :meth:`stats` is O(1) when asked again for the same window
    (the statistics are kept up to date by :meth:`add`) and O(buckets) <= 1,440
    when the window moved, i.e. at most once per minute of a clock that only
    goes forward.
    """

    __slots__ = ("_buckets", "_cached_start", "_cached")

    def __init__(self) -> None:
        self._buckets: deque[Candle] = deque()
        self._cached_start: int | None = None
        """Window start of :attr:`_cached`; None: nothing cached."""
        self._cached: Stats24h | None = None

    def add(self, ts: int, price: int, qty: int) -> None:
        """Count one trade. O(1) amortised."""
        buckets = self._buckets
        if buckets and ts <= buckets[-1].close_time:
            bucket = buckets[-1]
            bucket.add(price, qty)
        else:
            bucket = new_candle(open_time_of(ts, MINUTE_MS), MINUTE_MS, price, qty)
            buckets.append(bucket)
            self._drop_before(window_start(ts))
        start = self._cached_start
        if start is None:
            return
        if not start <= bucket.open_time < start + DAY_MS:
            self._cached_start = None  # the trade opened a later window: recompute then
            return
        s = self._cached
        if s is None:
            self._cached = Stats24h(price, price, price, price, qty, price * qty, 1,
                                    bucket.open_time)
        else:
            self._cached = Stats24h(s.open, price if price > s.high else s.high,
                                    price if price < s.low else s.low, price,
                                    s.volume + qty, s.quote_volume + price * qty,
                                    s.trades + 1, s.first_ts)

    def load(self, minutes: Iterable[Candle]) -> None:
        """Start from one-minute candles (oldest first), e.g. the database's."""
        self._buckets = deque(msgspec.structs.replace(c) for c in minutes)
        self._cached_start = None

    def stats(self, now_ms: int) -> Stats24h | None:
        """The statistics of the window ending in ``now_ms``'s minute; None if no trade.

        Equal to ``stats_of`` of the window's buckets (the reference), kept
        incrementally: O(1) for the window asked last, O(buckets) for another.
        """
        start = window_start(now_ms)
        if start == self._cached_start:
            return self._cached
        buckets = self._buckets
        if buckets and buckets[-1].open_time >= start + DAY_MS:
            return stats_of(self._in_window(now_ms))  # a window in the past: not kept
        result = stats_of(b for b in buckets if b.open_time >= start)
        self._cached_start, self._cached = start, result
        return result

    def minutes(self) -> list[Candle]:
        """The one-minute buckets held, oldest first (a copy of the list). O(n)."""
        return list(self._buckets)

    def _in_window(self, now_ms: int) -> Iterator[Candle]:
        start = window_start(now_ms)
        end = open_time_of(now_ms, MINUTE_MS) + MINUTE_MS
        return (b for b in self._buckets if start <= b.open_time < end)

    def _drop_before(self, start: int) -> None:
        buckets = self._buckets
        while buckets and buckets[0].open_time < start:
            buckets.popleft()


def window_start(now_ms: int) -> int:
    """The open time of the first minute of the 24-hour window holding ``now_ms``. O(1)."""
    return open_time_of(now_ms, MINUTE_MS) - (DAY_MINUTES - 1) * MINUTE_MS


def stats_of(minutes: Iterable[Candle]) -> Stats24h | None:
    """Statistics of one-minute candles (oldest first); None if there are none. O(n)."""
    first: Candle | None = None
    high = low = last = volume = quote = trades = 0
    for c in minutes:
        if first is None:
            first, high, low = c, c.high, c.low
        high = max(high, c.high)
        low = min(low, c.low)
        last = c.close
        volume += c.volume
        quote += c.quote_volume
        trades += c.trades
    if first is None:
        return None
    return Stats24h(first.open, high, low, last, volume, quote, trades, first.open_time)

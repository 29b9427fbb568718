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


class Candle(msgspec.Struct, gc=False):
    """One interval's trades; ``closed`` once a trade of a later interval arrived."""

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
        (if the trade opened a new interval) and the one it is in. The caller must not
        keep the returned objects past the next call if it needs them unchanged: the
        current candle is updated in place."""
        current = self.current
        if current is not None and ts <= current.close_time:
            current.add(price, qty)
            return [current]
        candle = new_candle(open_time_of(ts, self.width), self.width, price, qty)
        self.current = candle
        if current is None:
            return [candle]
        current.closed = True
        self.closed.append(current)
        return [current, candle]

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
    new ones open); :meth:`stats` is O(buckets in the window) <= 1,440.
    """

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: deque[Candle] = deque()

    def add(self, ts: int, price: int, qty: int) -> None:
        buckets = self._buckets
        if buckets and ts <= buckets[-1].close_time:
            buckets[-1].add(price, qty)
            return
        buckets.append(new_candle(open_time_of(ts, MINUTE_MS), MINUTE_MS, price, qty))
        self._drop_before(window_start(ts))

    def load(self, minutes: Iterable[Candle]) -> None:
        """Start from one-minute candles (oldest first), e.g. the database's."""
        self._buckets = deque(msgspec.structs.replace(c) for c in minutes)

    def stats(self, now_ms: int) -> Stats24h | None:
        """The statistics of the window ending in ``now_ms``'s minute; None if no trade."""
        return stats_of(self._in_window(now_ms))

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

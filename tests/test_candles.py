"""candles.core against a naive reference: random trades, every interval, the 24-hour window.

The reference recomputes everything from the full trade list each time it is
asked (group by interval, fold), so it is obviously right and shares no code
with ``candles.core`` beyond the interval widths. Trades mostly move forward in
time, by milliseconds to days, and sometimes carry an older ``ts`` (which the
core counts in the current candle: the reference does that by bucketing each
trade at the running maximum of the times so far).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from candles.core import (
    INTERVALS,
    Candle,
    CandleSeries,
    Rolling24h,
    Stats24h,
    open_time_of,
    stats_of,
    window_start,
)

MINUTE = 60_000
DAY = 86_400_000
KEEP = 7
"""Closed candles a series keeps in these tests: small, so that the cut is exercised."""


@dataclass(frozen=True)
class T:
    ts: int
    price: int
    qty: int


def effective_times(trades: list[T]) -> list[int]:
    """Each trade's time as the core buckets it: the latest time seen so far."""
    out, latest = [], 0
    for t in trades:
        latest = max(latest, t.ts)
        out.append(latest)
    return out


def naive_candles(trades: list[T], width: int) -> list[Candle]:
    """Every interval's candle from the full list, oldest first; all but the last closed."""
    groups: dict[int, list[T]] = {}
    for t, ts in zip(trades, effective_times(trades), strict=True):
        groups.setdefault(ts - ts % width, []).append(t)
    out = []
    for open_time, ts_ in groups.items():
        prices = [t.price for t in ts_]
        out.append(Candle(open_time, open_time + width - 1, prices[0], max(prices), min(prices),
                          prices[-1], sum(t.qty for t in ts_),
                          sum(t.price * t.qty for t in ts_), len(ts_), closed=True))
    if out:
        out[-1].closed = False
    return out


def naive_stats(trades: list[T], now: int) -> Stats24h | None:
    """The 24-hour window's statistics from the full list (minute buckets by effective time)."""
    end = now - now % MINUTE + MINUTE
    start = end - 1440 * MINUTE
    inside = [(t, ts) for t, ts in zip(trades, effective_times(trades), strict=True)
              if start <= ts - ts % MINUTE < end]
    if not inside:
        return None
    prices = [t.price for t, _ in inside]
    first_ts = inside[0][1]
    return Stats24h(prices[0], max(prices), min(prices), prices[-1],
                    sum(t.qty for t, _ in inside), sum(t.price * t.qty for t, _ in inside),
                    len(inside), first_ts - first_ts % MINUTE)


steps = st.one_of(
    st.integers(0, 3_000),                 # same candle mostly
    st.integers(0, 20 * MINUTE),           # across minutes and 5 / 15 minutes
    st.integers(0, 6 * 3_600_000),         # across hours and 4 hours
    st.integers(0, 2 * DAY),               # across days, out of the 24-hour window
    st.integers(-10 * MINUTE, -1),         # an older time (counted in the current candle)
)


@st.composite
def trade_lists(draw: st.DrawFn, max_size: int = 120) -> list[T]:
    ts = draw(st.integers(1_600_000_000_000, 1_800_000_000_000))
    out = []
    for step in draw(st.lists(steps, min_size=1, max_size=max_size)):
        ts = max(0, ts + step)
        out.append(T(ts, draw(st.integers(1, 50)), draw(st.integers(1, 9))))
    return out


CASES = settings(max_examples=150, deadline=None)


@CASES
@given(trade_lists())
def test_every_interval_equals_the_naive_recomputation_after_every_trade(
        trades: list[T]) -> None:
    for name, width in INTERVALS.items():
        series = CandleSeries(width, keep=KEEP)
        for i, t in enumerate(trades):
            changed = series.add(t.ts, t.price, t.qty)
            expected = naive_candles(trades[:i + 1], width)
            # What the add changed: the candle it is in, after the one it closed (if any).
            opened = len(expected) > 1 and expected[-1].trades == 1 and (
                len(naive_candles(trades[:i], width)) < len(expected))
            assert changed == (expected[-2:] if opened else expected[-1:]), (name, i)
            assert series.last(KEEP + 1) == expected[-(KEEP + 1):], (name, i)
        assert series.last(3) == naive_candles(trades, width)[-3:]
        assert series.last(0) == []


@CASES
@given(trade_lists(), st.data())
def test_a_candle_closes_when_the_clock_passes_its_close_time(
        trades: list[T], data: st.DataObject) -> None:
    latest = max(effective_times(trades))
    for width in INTERVALS.values():
        series = CandleSeries(width, keep=KEEP)
        for t in trades:
            series.add(t.ts, t.price, t.qty)
        current = series.current
        assert current is not None and not current.closed
        before = msgspec.structs.asdict(current)
        now = data.draw(st.integers(latest, latest + 2 * width))
        closed = series.close_until(now)
        assert (closed is current) == (now > current.close_time)
        assert current.closed == (now > current.close_time)
        assert series.close_until(now) is None  # once
        # Closing changes the flag only, and the next trade opens a later candle.
        after = msgspec.structs.asdict(current)
        assert {k: v for k, v in after.items() if k != "closed"} == {
            k: v for k, v in before.items() if k != "closed"}
        if current.closed:
            # The next trade opens a later candle; the closed one is not changed again.
            (new,) = series.add(now, 7, 1)
            assert new.open_time == open_time_of(now, width) > current.close_time
            assert series.last(2) == [current, new]


@CASES
@given(trade_lists(), st.data())
def test_loading_the_earlier_candles_then_adding_equals_adding_everything(
        trades: list[T], data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(trades)))
    for width in INTERVALS.values():
        whole = CandleSeries(width, keep=KEEP)
        for t in trades:
            whole.add(t.ts, t.price, t.qty)
        source = naive_candles(trades[:k], width)
        resumed = CandleSeries(width, keep=KEEP)
        resumed.load(source)
        for c in source:
            c.volume = -1  # load copied them
        if k:
            # The restart's first trade cannot be older than what the database holds.
            assert resumed.last(KEEP + 1) == naive_candles(trades[:k], width)[-(KEEP + 1):]
        for t in trades[k:]:
            resumed.add(t.ts, t.price, t.qty)
        assert resumed.last(KEEP + 1) == whole.last(KEEP + 1)


@CASES
@given(trade_lists(), st.data())
def test_rolling_24h_equals_the_naive_window_at_every_step(
        trades: list[T], data: st.DataObject) -> None:
    rolling = Rolling24h()
    latest = 0
    for i, t in enumerate(trades):
        rolling.add(t.ts, t.price, t.qty)
        latest = max(latest, t.ts)
        seen = trades[:i + 1]
        # The market's clock (the latest time), a later one (the window slides while
        # nothing trades), the same again (kept), and the clock again.
        later = latest + data.draw(st.integers(0, 2 * DAY))
        for now in (latest, later, later, latest):
            assert rolling.stats(now) == naive_stats(seen, now), (i, now - latest)
        assert rolling.stats(latest) == stats_of(
            b for b in rolling.minutes() if b.open_time >= window_start(latest))


@CASES
@given(trade_lists(), st.data())
def test_rolling_24h_kept_across_adds_for_the_same_window(
        trades: list[T], data: st.DataObject) -> None:
    """Asked at a fixed ``now`` ahead of the trades while they arrive: kept incrementally."""
    latest = max(effective_times(trades))
    now = latest + data.draw(st.integers(0, DAY))
    rolling = Rolling24h()
    for i, t in enumerate(trades):
        rolling.add(t.ts, t.price, t.qty)
        assert rolling.stats(now) == naive_stats(trades[:i + 1], now), i


@CASES
@given(trade_lists(), st.data())
def test_rolling_24h_loaded_from_minutes_then_added_equals_adding_everything(
        trades: list[T], data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(trades)))
    resumed = Rolling24h()
    resumed.load(naive_candles(trades[:k], MINUTE))
    for t in trades[k:]:
        resumed.add(t.ts, t.price, t.qty)
    latest = max(effective_times(trades))
    for now in (latest, latest + data.draw(st.integers(0, 2 * DAY))):
        assert resumed.stats(now) == naive_stats(trades, now)


def test_alignment_and_close_time_follow_binance() -> None:
    ts = 1_700_000_123_456  # 2023-11-14T22:15:23.456Z
    assert open_time_of(ts, INTERVALS["1m"]) == 1_700_000_100_000
    assert open_time_of(ts, INTERVALS["1h"]) == 1_699_999_200_000
    assert open_time_of(ts, INTERVALS["4h"]) == 1_699_992_000_000  # 20:00 UTC
    assert open_time_of(ts, INTERVALS["1d"]) == 1_699_920_000_000  # midnight UTC
    series = CandleSeries(INTERVALS["1m"])
    (candle,) = series.add(ts, 100, 2)
    assert (candle.open_time, candle.close_time) == (1_700_000_100_000, 1_700_000_159_999)
    assert series.add(1_700_000_159_999, 101, 1) == [candle]  # the last ms still counts
    assert series.close_until(1_700_000_159_999) is None  # the clock at close_time: open
    assert series.close_until(1_700_000_160_000) is candle and candle.closed
    series.current = msgspec.structs.replace(candle, closed=False)
    candle = series.current
    closed, new = series.add(1_700_000_160_000, 99, 1)
    assert closed is candle and closed.closed and new.open_time == 1_700_000_160_000
    assert window_start(ts) == 1_700_000_100_000 - 1439 * MINUTE
    rolling = Rolling24h()
    rolling.add(ts, 100, 2)
    assert rolling.stats(ts + DAY - 23_456 - 1) is not None  # the last minute of the window
    assert rolling.stats(ts + DAY - 23_456) is None  # 24 h after the trade's minute: out

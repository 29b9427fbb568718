"""The feed's history (PROTOCOL.md section C) without I/O: candles, 24-hour ticker fields,
the trades snapshot, ``ts`` on book and ticker, and seeding from a database's view.

Expected values come from :func:`wire_candles` / :func:`wire_stats`, a reference
written from the protocol text with ``Decimal`` arithmetic: it shares no code with
``candles`` or the feed's formatting. The engine's ``ts`` of a flow is all within
a few milliseconds, so :func:`timed` restamps each command's events with times
spread over more than a day (the engine's clock never goes back; neither do these).
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from marketdata_helpers import Flow, Replay

from contract.events import BookUpdate, Event, Trade
from contract.market import DEFAULT_MARKETS, Market
from marketdata.feed import MarketFeed
from marketdata.requests import RequestError, parse_request
from matching.snapshot import take_snapshot

BTC, ETH = DEFAULT_MARKETS
MINUTE = 60_000
INTERVALS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000,
             "4h": 14_400_000, "1d": 86_400_000}
START_MS = 1_700_000_000_000
SYMBOLS = frozenset({"BTC-USD", "ETH-USD"})


# -- the reference ------------------------------------------------------------------------


def _places(step: str) -> int:
    return len(step.partition(".")[2])


def price_str(market: Market, ticks: int) -> str:
    return f"{Decimal(ticks) * Decimal(market.tick_size):.{_places(market.tick_size)}f}"


def qty_str(market: Market, lots: int) -> str:
    return f"{Decimal(lots) * Decimal(market.lot_size):.{_places(market.lot_size)}f}"


def quote_str(market: Market, trades: list[Trade]) -> str:
    total = sum((Decimal(t.price) * Decimal(market.tick_size) * Decimal(t.qty)
                 * Decimal(market.lot_size) for t in trades), Decimal(0))
    assert market.quote_decimals is not None
    return f"{total:.{market.quote_decimals}f}"


def wire_candles(market: Market, trades: list[Trade], width: int, clock: int
                 ) -> list[dict[str, Any]]:
    """Every candle of ``trades`` (times never going back) as the wire shows it at ``clock``:
    UTC-aligned, close_time = open_time + width - 1, closed once a later candle exists or
    the clock passed close_time; intervals without trades have none."""
    groups: dict[int, list[Trade]] = {}
    for t in trades:
        groups.setdefault(t.ts - t.ts % width, []).append(t)
    out = []
    opens = list(groups)
    for i, open_time in enumerate(opens):
        ts_ = groups[open_time]
        prices = [t.price for t in ts_]
        close_time = open_time + width - 1
        out.append({"open_time": open_time, "close_time": close_time,
                    "open": price_str(market, prices[0]), "high": price_str(market, max(prices)),
                    "low": price_str(market, min(prices)), "close": price_str(market, prices[-1]),
                    "volume": qty_str(market, sum(t.qty for t in ts_)),
                    "quote_volume": quote_str(market, ts_), "trades": len(ts_),
                    "closed": i < len(opens) - 1 or clock > close_time})
    return out


def wire_stats(market: Market, trades: list[Trade], clock: int) -> dict[str, Any]:
    """The ticker's 24-hour fields at ``clock``: trades from the 1,440th minute back."""
    start = clock - clock % MINUTE - 1439 * MINUTE
    inside = [t for t in trades if t.ts >= start and t.ts <= clock]
    if not inside:
        return {"open_24h": None, "high_24h": None, "low_24h": None,
                "volume_24h": qty_str(market, 0), "quote_volume_24h": quote_str(market, [])}
    prices = [t.price for t in inside]
    return {"open_24h": price_str(market, prices[0]), "high_24h": price_str(market, max(prices)),
            "low_24h": price_str(market, min(prices)),
            "volume_24h": qty_str(market, sum(t.qty for t in inside)),
            "quote_volume_24h": quote_str(market, inside)}


def wire_trade(market: Market, t: Trade) -> dict[str, Any]:
    return {"trade_id": t.trade_id, "price": price_str(market, t.price),
            "qty": qty_str(market, t.qty), "taker_side": t.taker_side, "ts": t.ts}


class CandleMirror:
    """A subscriber's candles of one interval: a snapshot, then updates by open_time.

    Checks what the protocol promises on the way: updates list candles oldest first,
    each once; a closed candle is sent closed once and never again."""

    def __init__(self) -> None:
        self.candles: dict[int, dict[str, Any]] = {}
        self.closed_sent: set[int] = set()
        self.updates = 0

    def apply(self, msg: dict[str, Any]) -> None:
        assert msg["channel"] == "candles"
        opens = [c["open_time"] for c in msg["data"]]
        assert opens == sorted(set(opens)), "candles not oldest first, or twice"
        if msg["type"] == "snapshot":
            self.candles = {c["open_time"]: c for c in msg["data"]}
            self.closed_sent = {c["open_time"] for c in msg["data"] if c["closed"]}
            return
        self.updates += 1
        for c in msg["data"]:
            assert c["open_time"] not in self.closed_sent, f"closed candle sent again: {c}"
            assert c["trades"] > 0
            if c["closed"]:
                self.closed_sent.add(c["open_time"])
            self.candles[c["open_time"]] = c

    def last(self, n: int) -> list[dict[str, Any]]:
        return [self.candles[k] for k in sorted(self.candles)][-n:]


# -- flows with times spread over days ------------------------------------------------------


def timed(flow: Flow, seed: int, per_batch: int = 6) -> list[list[Event]]:
    """The flow's events in engine-like batches, each command restamped: the next one
    0..90 s later, sometimes 2..5 hours (so hours, days and the 24-hour window roll)."""
    rng = random.Random(seed)
    ts = START_MS + rng.randrange(86_400_000)
    out: list[list[Event]] = []
    batch: list[Event] = []
    k = rng.randint(1, per_batch)
    for events in flow.events:
        ts += rng.randrange(90_000) if rng.random() > 0.004 else rng.randrange(7_200_000,
                                                                               18_000_000)
        batch.extend(msgspec.structs.replace(e, ts=ts) for e in events)
        k -= 1
        if k == 0:
            out.append(batch)
            batch, k = [], rng.randint(1, per_batch)
    if batch:
        out.append(batch)
    return out


def trades_of(batches: list[list[Event]]) -> list[Trade]:
    return [e for b in batches for e in b if isinstance(e, Trade)]


def test_candles_ticker_and_trades_follow_the_trades_at_every_step() -> None:
    flow = Flow(BTC, 5000, seed=31, start_ms=START_MS)
    groups = timed(flow, seed=1)
    feed = MarketFeed(BTC)
    mirrors = {name: CandleMirror() for name in INTERVALS}
    for name, mirror in mirrors.items():
        mirror.apply(json.loads(feed.candles_snapshot(name)))
    done: list[Trade] = []
    published: list[dict[str, Any]] = []
    tickers = 0
    for i, events in enumerate(groups):
        batch = feed.apply(events)
        clock = events[-1].ts
        assert feed.ts == clock
        done.extend(e for e in events if isinstance(e, Trade))
        for name, mirror in mirrors.items():
            frame = batch.candles(name)
            if frame is not None:
                assert batch.candles(name) is frame, "encoded once per (market, interval)"
                msg = json.loads(frame)
                assert (msg["symbol"], msg["interval"], msg["seq"]) == (
                    "BTC-USD", name, events[-1].seq)
                mirror.apply(msg)
        frame = batch.trades()
        if frame is not None:
            published.extend(json.loads(frame)["data"])
        for depth in (10, 500):
            frame = batch.book(depth)
            if frame is not None:
                assert json.loads(frame)["ts"] == clock
        frame = batch.ticker()
        if frame is not None:
            tickers += 1
            msg = json.loads(frame)
            assert msg["ts"] == clock
            if i % 7 == 0:
                assert {k: msg[k] for k in wire_stats(BTC, [], 0)} == wire_stats(BTC, done, clock)
        if i % 40 == 0 or i == len(groups) - 1:
            for name, mirror in mirrors.items():
                expected = wire_candles(BTC, done, INTERVALS[name], clock)
                assert mirror.last(100) == expected[-100:], (name, i)
                snapshot = json.loads(feed.candles_snapshot(name))
                assert snapshot["type"] == "snapshot" and snapshot["seq"] == feed.seq
                assert snapshot["data"] == expected[-100:], (name, i)
    assert len(done) > 400 and tickers > 300
    assert (done[-1].ts - done[0].ts) > 2 * 86_400_000, "the flow spans days"
    assert published == [wire_trade(BTC, t) for t in done]
    assert len(wire_candles(BTC, done, MINUTE, 0)) > 100, "the 1m snapshot was cut at 100"
    assert mirrors["1m"].updates > 100 and len(mirrors["1d"].candles) >= 3
    snap = json.loads(feed.trades_snapshot())
    assert (snap["type"], snap["seq"]) == ("snapshot", feed.seq)
    assert snap["data"] == [wire_trade(BTC, t) for t in done[-50:]]
    ticker = json.loads(feed.ticker_message())
    assert {k: ticker[k] for k in wire_stats(BTC, [], 0)} == wire_stats(BTC, done, feed.ts)
    book = json.loads(feed.book_snapshot(25))
    assert book["ts"] == feed.ts


def test_a_non_trade_event_after_close_time_closes_the_candle() -> None:
    """The market's clock closes candles: a book-only event later than close_time sends
    the candle once more, closed; the next trade opens a new one without resending it."""
    feed = MarketFeed(ETH)
    t0 = 1_700_000_040_000  # 2023-11-14T22:14:00Z, a minute boundary
    feed.apply([Trade(1, t0 + 5_000, 1, 123_456, 1_500, "buy", "m", "t")])
    batch = feed.apply([BookUpdate(2, t0 + 59_999, ((100, 1),), ())])  # still that minute
    assert batch.candles("1m") is None
    batch = feed.apply([BookUpdate(3, t0 + 60_000, ((100, 2),), ())])  # the next minute
    (closed,) = json.loads(batch.candles("1m") or b"")["data"]
    assert closed == {"open_time": t0, "close_time": t0 + 59_999, "open": "1234.56",
                      "high": "1234.56", "low": "1234.56", "close": "1234.56",
                      "volume": "1.500", "quote_volume": "1851.840000", "trades": 1,
                      "closed": True}
    # 22:15 ends the 5-minute and the 15-minute candles too, not the hour's.
    for name, open_time in (("5m", t0 - 240_000), ("15m", t0 - 840_000)):
        (c,) = json.loads(batch.candles(name) or b"")["data"]
        assert (c["open_time"], c["closed"], c["trades"]) == (open_time, True, 1)
    assert batch.candles("1h") is None
    batch = feed.apply([Trade(4, t0 + 61_000, 2, 123_457, 1, "sell", "m", "t")])
    for name in ("1m", "5m", "15m"):  # a new candle each; the closed ones are not sent again
        (opened,) = json.loads(batch.candles(name) or b"")["data"]
        assert (opened["open_time"], opened["closed"], opened["quote_volume"]) == (
            t0 + 60_000, False, "1.234570")
    (hour,) = json.loads(batch.candles("1h") or b"")["data"]
    assert (hour["open_time"], hour["trades"], hour["volume"], hour["closed"]) == (
        1_699_999_200_000, 2, "1.501", False)
    ticker = json.loads(feed.ticker_message())
    assert (ticker["open_24h"], ticker["high_24h"], ticker["low_24h"], ticker["volume_24h"],
            ticker["quote_volume_24h"], ticker["ts"]) == (
        "1234.56", "1234.57", "1234.56", "1.501", "1853.074570", t0 + 61_000)
    # A day later (the clock moved by an event), the window is empty again.
    feed.apply([BookUpdate(5, t0 + 61_000 + 86_400_000, ((100, 3),), ())])
    ticker = json.loads(feed.ticker_message())
    assert (ticker["open_24h"], ticker["volume_24h"], ticker["quote_volume_24h"]) == (
        None, "0.000", "0.000000")


# -- seeding: the database's view, then the stream ---------------------------------------------


class DatabaseView:
    """What ``streamex history`` would have written after the flow's first ``n`` trades
    (computed by the reference, not by candles.core)."""

    def __init__(self, trades: list[Trade], n: int) -> None:
        self.trades = trades[:n]
        self.last_trade_id = self.trades[-1].trade_id if self.trades else 0

    def seed(self, feed: MarketFeed) -> None:
        from candles.core import Candle

        def candle(c: dict[str, Any], market: Market) -> Candle:
            # back to integers: the database stores ticks, lots and sum(ticks * lots)
            return Candle(c["open_time"], c["close_time"], market.parse_price(c["open"]),
                          market.parse_price(c["high"]), market.parse_price(c["low"]),
                          market.parse_price(c["close"]), market.parse_qty(c["volume"]),
                          sum(t.price * t.qty for t in self.trades
                              if c["open_time"] <= t.ts <= c["close_time"]),
                          c["trades"], False)

        clock = self.trades[-1].ts if self.trades else 0
        candles = {name: [candle(c, feed.market) for c in
                          wire_candles(feed.market, self.trades, width, clock)[-100:]]
                   for name, width in INTERVALS.items()}
        start = clock - clock % MINUTE - 1439 * MINUTE
        minutes = [candle(c, feed.market)
                   for c in wire_candles(feed.market, self.trades, MINUTE, clock)
                   if c["open_time"] >= start]
        recent = [(t.trade_id, t.price, t.qty, t.taker_side, t.ts) for t in self.trades[-50:]]
        feed.seed(candles, minutes, recent, self.last_trade_id)


def snapshot_at(flow: Flow, groups: list[list[Event]], k: int) -> Any:
    """The engine snapshot after the first ``k`` batches (the book replayed to there)."""
    seq = groups[k - 1][-1].seq
    replay = Replay(flow)
    replay.to_seq(seq)
    return take_snapshot(replay.book, flow.entries[replay.next - 1][0], f"{k}-0")


@pytest.mark.parametrize(("db_part", "snap_part"), [(0.3, 0.6), (0.7, 0.4), (0.5, 0.5),
                                                    (0.0, 0.5), (1.0, 0.5)])
def test_seeded_from_the_database_and_the_stream_equals_counting_everything(
        db_part: float, snap_part: float) -> None:
    """A feed restarted at an engine snapshot, seeded with the database's view (behind
    or ahead of the snapshot), the stream's trades between the two counted, then the
    rest applied: the same candles, 24-hour fields and trades snapshot as a feed that
    saw everything, and no trade counted or published twice."""
    flow = Flow(BTC, 2000, seed=32, start_ms=START_MS)
    groups = timed(flow, seed=2)
    everything = MarketFeed(BTC)
    for events in groups:
        everything.apply(events)
    trades = trades_of(groups)
    k = int(len(groups) * snap_part)
    snap = snapshot_at(flow, groups, k)
    db = DatabaseView(trades, int(len(trades) * db_part))

    restarted = MarketFeed(BTC)
    restarted.restore(snap, None)
    db.seed(restarted)
    gap = [t for t in trades_of(groups[:k]) if t.trade_id > db.last_trade_id]
    assert restarted.catch_up(gap) == len(gap)
    assert restarted.catch_up(gap) == 0  # counted once
    published = []
    for events in groups[k:]:
        frame = restarted.apply(events).trades()
        if frame is not None:
            published.extend(json.loads(frame)["data"])
    first_new = max(db.last_trade_id, snap.trade_id) + 1
    assert [t["trade_id"] for t in published] == [
        t.trade_id for t in trades if t.trade_id >= first_new]
    for name in INTERVALS:
        assert restarted.candles_snapshot(name) == everything.candles_snapshot(name), name
    assert restarted.trades_snapshot() == everything.trades_snapshot()
    day = list(wire_stats(BTC, [], 0))
    assert [json.loads(restarted.ticker_message())[k] for k in day] == \
        [json.loads(everything.ticker_message())[k] for k in day]


def test_candle_requests_name_the_interval_param() -> None:
    def refused(params: dict[str, Any], method: str = "subscribe") -> str:
        with pytest.raises(RequestError) as info:
            parse_request(json.dumps({"id": 4, "method": method, "params": params}), SYMBOLS)
        assert info.value.code == "BAD_REQUEST" and info.value.request_id == 4
        return info.value.message

    base = {"channel": "candles", "symbol": "BTC-USD"}
    assert refused({**base, "interval": "2m"}) == \
        "params.interval: '2m' is not one of 1m, 5m, 15m, 1h, 4h, 1d"
    assert refused({**base, "interval": "2m"}, "unsubscribe").startswith("params.interval:")
    assert refused({**base, "interval": 60}).startswith("params.interval: expected `str")
    assert refused(base).startswith("params.interval: required for channel candles")
    assert refused({"channel": "trades", "symbol": "BTC-USD", "interval": "1m"}) == \
        "params.interval: only for channel candles"
    assert refused({**base, "interval": "1m", "depth": 10}) == \
        "params.depth: only for channel book"
    req = parse_request(json.dumps({"id": 1, "method": "subscribe",
                                    "params": {**base, "interval": "4h"}}), SYMBOLS)
    assert req.params is not None and req.params.to_wire() == {**base, "interval": "4h"}
    req = parse_request(json.dumps({"id": 1, "method": "unsubscribe", "params": base}),
                        SYMBOLS)
    assert req.params is not None and req.params.interval is None

"""MarketFeed (events -> messages), request parsing and the outbox policy: no I/O."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest
from marketdata_helpers import BookMirror, Flow, Replay

from contract import errors
from contract.events import BookUpdate, Event, Report, Trade
from contract.market import DEFAULT_MARKETS
from contract.market_data import checksum
from marketdata.feed import MarketFeed, SeqGap
from marketdata.outbox import Outbox, Overflow
from marketdata.requests import RequestError, parse_request
from matching.snapshot import take_snapshot

BTC = DEFAULT_MARKETS[0]
DEPTHS = (10, 25, 100, 500)
SYMBOLS = frozenset({"BTC-USD", "ETH-USD"})


def batches(flow: Flow, seed: int, max_size: int = 12) -> list[list[Event]]:
    """The flow's events grouped as an engine would commit them: 1..max_size commands."""
    rng = random.Random(seed)
    out: list[list[Event]] = []
    i = 0
    while i < len(flow.events):
        k = rng.randint(1, max_size)
        out.append([e for evs in flow.events[i:i + k] for e in evs])
        i += k
    return out


def test_messages_rebuild_the_engine_book_trades_and_ticker_at_every_step() -> None:
    flow = Flow(BTC, 2500, seed=7)
    feed = MarketFeed(BTC)
    mirrors = {d: BookMirror(d) for d in DEPTHS}
    for d, mirror in mirrors.items():
        mirror.apply(json.loads(feed.book_snapshot(d)))
    replay = Replay(flow)
    trades: list[dict[str, Any]] = []
    tickers = 0
    for events in batches(flow, seed=1):
        batch = feed.apply(events)
        for d, mirror in mirrors.items():
            frame = batch.book(d)
            if frame is None:
                continue
            assert batch.book(d) is frame, "encoded once per (market, depth)"
            msg = json.loads(frame)
            mirror.apply(msg)
            replay.to_seq(msg["seq"])
            assert mirror.top("buy") == replay.top("buy", d)
            assert mirror.top("sell") == replay.top("sell", d)
        frame = batch.trades()
        if frame is not None:
            msg = json.loads(frame)
            in_batch = [e for e in events if isinstance(e, Trade)]
            assert msg["seq"] == in_batch[-1].seq
            assert [t["trade_id"] for t in msg["data"]] == [t.trade_id for t in in_batch]
            trades.extend(msg["data"])
        frame = batch.ticker()
        if frame is not None:
            tickers += 1
            msg = json.loads(frame)
            replay.to_seq(msg["seq"])
            best_bid = replay.top("buy", 1)
            best_ask = replay.top("sell", 1)
            assert [msg["best_bid"], msg["best_bid_qty"]] == (best_bid[0] if best_bid
                                                              else [None, None])
            assert [msg["best_ask"], msg["best_ask_qty"]] == (best_ask[0] if best_ask
                                                              else [None, None])
            last = replay.last_trade
            assert last is not None or msg["last_price"] is None
            if last is not None:
                assert msg["last_price"] == BTC.format_price(last.price)
                assert msg["last_qty"] == BTC.format_qty(last.qty)
    expected = flow.trades()
    assert len(expected) > 100
    assert [t["trade_id"] for t in trades] == list(range(1, len(expected) + 1))
    assert trades == [{"trade_id": t.trade_id, "price": BTC.format_price(t.price),
                       "qty": BTC.format_qty(t.qty), "taker_side": t.taker_side, "ts": t.ts}
                      for t in expected]
    assert tickers > 50
    for d, mirror in mirrors.items():
        assert mirror.updates > 20
        for side in ("buy", "sell"):
            assert mirror.top(side) == [[BTC.format_price(p), BTC.format_qty(q)]
                                        for p, q in flow.book.depth(side, d)]
    # The flow built a book deeper than 100 levels, so windows really were cut.
    assert len(flow.book.bids) > 100 and len(flow.book.asks) > 100


def test_fresh_snapshot_chains_with_the_next_update() -> None:
    flow = Flow(BTC, 600, seed=3)
    feed = MarketFeed(BTC)
    groups = batches(flow, seed=2)
    for events in groups[:-10]:
        feed.apply(events)
    mirror = BookMirror(25)
    mirror.apply(json.loads(feed.book_snapshot(25)))
    for events in groups[-10:]:
        frame = feed.apply(events).book(25)
        if frame is not None:
            mirror.apply(json.loads(frame))
    assert mirror.top("buy") == [[BTC.format_price(p), BTC.format_qty(q)]
                                 for p, q in flow.book.depth("buy", 25)]


def test_gap_raises_and_leaves_the_state_alone() -> None:
    flow = Flow(BTC, 100, seed=4)
    events = [e for evs in flow.events for e in evs]
    feed = MarketFeed(BTC)
    feed.apply(events[:50])
    with pytest.raises(SeqGap) as info:
        feed.apply(events[51:60])
    assert (info.value.expected, info.value.got) == (51, 52)
    assert feed.seq == 50
    # An entry already applied (e.g. read twice) is skipped, not applied again.
    assert feed.apply(events[40:50]).empty
    feed.apply(events[50:60])
    assert feed.seq == 60


def test_restore_from_a_later_snapshot_keeps_subscribers_exact() -> None:
    flow = Flow(BTC, 1500, seed=5)
    feed = MarketFeed(BTC)
    groups = batches(flow, seed=3)
    head = groups[: len(groups) // 3]
    for events in head:
        feed.apply(events)
    mirrors = {d: BookMirror(d) for d in DEPTHS}
    for d, mirror in mirrors.items():
        mirror.apply(json.loads(feed.book_snapshot(d)))
    # Everything after ``head`` was trimmed away; the engine's snapshot covers it.
    snap = take_snapshot(flow.book, flow.entries[-1][0], "1-0")
    last = flow.trades()[-1]
    batch = feed.restore(snap, (last.price, last.qty))
    for d, mirror in mirrors.items():
        frame = batch.book(d)
        assert frame is not None
        msg = json.loads(frame)
        assert msg["seq"] == snap.seq
        mirror.apply(msg)
        assert mirror.top("buy") == [[BTC.format_price(p), BTC.format_qty(q)]
                                     for p, q in flow.book.depth("buy", d)]
        assert mirror.top("sell") == [[BTC.format_price(p), BTC.format_qty(q)]
                                      for p, q in flow.book.depth("sell", d)]
    ticker = json.loads(feed.ticker_message())
    assert ticker["last_price"] == BTC.format_price(last.price)
    assert feed.seq == snap.seq and feed.trade_id == snap.trade_id


def test_non_book_events_move_the_seq_without_messages() -> None:
    feed = MarketFeed(BTC)
    report = Report(1, 5, "a", "1-0", None, "buy", "limit", "GTC", 100, 1, "rejected",
                    "rejected", 0, 0, 0, 0, 0, None, None, errors.INVALID_QTY)
    assert feed.apply([report]).empty
    assert feed.seq == 1
    snapshot = json.loads(feed.book_snapshot(10))
    assert snapshot == {"channel": "book", "type": "snapshot", "symbol": "BTC-USD", "seq": 0,
                        "bids": [], "asks": [], "checksum": zlib.crc32(b""), "ts": 5}
    batch = feed.apply([BookUpdate(2, 7, ((100, 3),), ())])
    update = json.loads(batch.book(10) or b"")
    assert update == {"channel": "book", "type": "update", "symbol": "BTC-USD", "seq": 2,
                      "prev_seq": 0, "bids": [["1.00", "0.0003"]], "asks": [],
                      "checksum": zlib.crc32(b"1003"), "ts": 7}
    ticker = json.loads(batch.ticker() or b"")
    assert ticker == {"channel": "ticker", "type": "update", "symbol": "BTC-USD", "seq": 2,
                      "best_bid": "1.00", "best_bid_qty": "0.0003", "best_ask": None,
                      "best_ask_qty": None, "last_price": None, "last_qty": None,
                      "open_24h": None, "high_24h": None, "low_24h": None,
                      "volume_24h": "0.0000", "quote_volume_24h": "0.000000", "ts": 7}
    assert json.loads(feed.trades_snapshot()) == {
        "channel": "trades", "type": "snapshot", "symbol": "BTC-USD", "seq": 2, "data": []}
    assert json.loads(feed.candles_snapshot("1h")) == {
        "channel": "candles", "type": "snapshot", "symbol": "BTC-USD", "interval": "1h",
        "seq": 2, "data": []}


def test_checksum_follows_the_kraken_rule() -> None:
    asks = [("0.05005", "0.00000500"), ("0.05010", "0.00000500")]
    bids = [("0.05000", "0.00000500")]
    assert checksum(asks, bids) == zlib.crc32(b"500550050105005000500")
    # Only the top 10 of each side count.
    many = [(f"{100 + i}.00", "1.0000") for i in range(15)]
    assert checksum(many, many) == checksum(many[:10], many[:10])


@pytest.mark.parametrize(("frame", "code", "rid"), [
    ("not json", errors.BAD_REQUEST, None),
    ("[1, 2]", errors.BAD_REQUEST, None),
    ('{"id": 1.5, "method": "ping"}', errors.BAD_REQUEST, None),
    ('{"id": 7}', errors.BAD_REQUEST, 7),
    ('{"id": 7, "method": 3}', errors.BAD_REQUEST, 7),
    ('{"id": "x", "method": "order.place"}', errors.UNKNOWN_METHOD, "x"),
    ('{"id": 1, "method": "subscribe"}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", "params": []}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", "params": {"channel": "candles", "symbol": "BTC-USD"}}',
     errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", "params": {"channel": "book", "symbol": 5}}',
     errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", "params": {"channel": "book", "symbol": "DOGE-USD"}}',
     errors.UNKNOWN_SYMBOL, 1),
    ('{"id": 1, "method": "subscribe", '
     '"params": {"channel": "book", "symbol": "BTC-USD", "depth": 7}}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", '
     '"params": {"channel": "book", "symbol": "BTC-USD", "depth": "10"}}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", '
     '"params": {"channel": "book", "symbol": "BTC-USD", "depth": true}}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", '
     '"params": {"channel": "trades", "symbol": "BTC-USD", "depth": 10}}', errors.BAD_REQUEST, 1),
    ('{"id": 1, "method": "subscribe", '
     '"params": {"channel": "trades", "symbol": "BTC-USD", "extra": 1}}', errors.BAD_REQUEST, 1),
])
def test_bad_requests_get_the_protocol_code(frame: str, code: str, rid: object) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(frame, SYMBOLS)
    assert info.value.code == code
    assert info.value.request_id == rid


def test_good_requests_parse() -> None:
    req = parse_request('{"id": 3, "method": "subscribe", '
                        '"params": {"channel": "book", "symbol": "ETH-USD"}}', SYMBOLS)
    assert req.params is not None and req.params.depth == 10
    assert parse_request('{"method": "ping"}', SYMBOLS).id is None
    assert parse_request('{"id": "a", "method": "markets", "params": {}}', SYMBOLS).id == "a"


def test_outbox_policy_resyncs_once_then_closes() -> None:
    box = Outbox(limit=2, resync_window_s=10.0)
    assert box.push(b"1") and box.reply(b"r") and not box.push(b"2")
    assert box.on_overflow(100.0, has_trades=False) is Overflow.RESYNC
    box.drop_pushes()
    assert box.pop() == b"r" and box.pop() is None
    assert box.on_overflow(105.0, has_trades=False) is Overflow.CLOSE
    assert box.on_overflow(200.0, has_trades=False) is Overflow.RESYNC
    assert box.on_overflow(300.0, has_trades=True) is Overflow.CLOSE


def test_an_iceberg_shows_only_its_slice_and_an_untriggered_stop_nothing() -> None:
    """The feed's book, its checksum and a snapshot restore count an iceberg's visible
    slice only and never a stop waiting for its trigger; a refill shows the next slice."""
    from contract.commands import Place
    from matching.book import OrderBook

    book = OrderBook(BTC)
    feed = MarketFeed(BTC)
    lots = BTC.min_lots
    commands = [
        ("1-0", Place("maker", "sell", "limit", 10 * lots, 5_000_000, display_qty=2 * lots)),
        ("2-0", Place("other", "sell", "limit", 1 * lots, 5_000_000)),
        ("3-0", Place("stopper", "buy", "stop_limit", 7 * lots, 5_100_000,
                      stop_price=5_200_000)),
    ]
    for entry_id, cmd in commands:
        feed.apply(book.apply(entry_id, cmd))
    snapshot = json.loads(feed.book_snapshot(10))
    shown = [[BTC.format_price(5_000_000), BTC.format_qty(3 * lots)]]
    assert snapshot["asks"] == shown and snapshot["bids"] == []
    assert snapshot["checksum"] == checksum(shown, [])
    # The whole first slice and the other order fill; the iceberg shows its next slice.
    feed.apply(book.apply("4-0", Place("taker", "buy", "limit", 3 * lots, 5_000_000)))
    assert json.loads(feed.book_snapshot(10))["asks"] == [
        [BTC.format_price(5_000_000), BTC.format_qty(2 * lots)]]
    restored = MarketFeed(BTC)
    restored.restore(take_snapshot(book, "4-0", "1-0"), None)
    assert json.loads(restored.book_snapshot(10))["asks"] == [
        [BTC.format_price(5_000_000), BTC.format_qty(2 * lots)]]

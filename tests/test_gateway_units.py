"""Sans-I/O parts of the gateway: logon signatures, token buckets, reports, open-orders view."""

from __future__ import annotations

import random

import pytest

from contract.commands import Amend, Cancel, CancelAll, Command, Place
from contract.errors import UNAUTHENTICATED, StreamexError
from contract.events import CancelRejected, Event, Report
from contract.ids import parse_id
from contract.market import DEFAULT_MARKETS
from contract.settings import Account
from contract.signing import sign
from contract.snapshot import decode_snapshot, encode_snapshot
from gateway.auth import verify_logon
from gateway.orders_view import OpenOrdersView
from gateway.ratelimit import TokenBucket
from gateway.reports import cancel_rejected_of, push_frame, report_of, status_of
from matching.book import OrderBook
from matching.snapshot import take_snapshot

BTC = DEFAULT_MARKETS[0]
ALICE = Account("alice", "alice-key", "s3cret")
BY_KEY = {ALICE.api_key: ALICE}
NOW = 1_700_000_000_000

# -- logon -----------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_hex_of_timestamp_and_key() -> None:
    # Reference value computed independently: HMAC-SHA256("s3cret", "1700000000000alice-key").
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1700000000000alice-key", hashlib.sha256).hexdigest()
    assert sign("s3cret", NOW, "alice-key") == expected
    assert expected == expected.lower() and len(expected) == 64


def test_valid_logon_within_the_window() -> None:
    for skew in (0, 29_999, -30_000, 30_000):
        ts = NOW + skew
        assert verify_logon(BY_KEY, "alice-key", ts, sign("s3cret", ts, "alice-key"), NOW) is ALICE
    upper = sign("s3cret", NOW, "alice-key").upper()
    assert verify_logon(BY_KEY, "alice-key", NOW, upper, NOW) is ALICE


@pytest.mark.parametrize(("api_key", "ts", "signature"), [
    ("alice-key", NOW - 30_001, sign("s3cret", NOW - 30_001, "alice-key")),  # replayed, too old
    ("alice-key", NOW + 30_001, sign("s3cret", NOW + 30_001, "alice-key")),  # from the future
    ("alice-key", NOW, sign("wrong", NOW, "alice-key")),
    ("alice-key", NOW, sign("s3cret", NOW + 1, "alice-key")),  # signed another timestamp
    ("alice-key", NOW, ""),
    ("alice-key", NOW, "é" * 64),  # non-ASCII
    ("nobody", NOW, sign("s3cret", NOW, "nobody")),
])
def test_bad_logons_are_unauthenticated(api_key: str, ts: int, signature: str) -> None:
    with pytest.raises(StreamexError) as caught:
        verify_logon(BY_KEY, api_key, ts, signature, NOW)
    assert caught.value.code == UNAUTHENTICATED
    assert "s3cret" not in caught.value.message


# -- token bucket ----------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


# -- reports ---------------------------------------------------------------------------------


def _book_events(commands: list[tuple[str, Command]]) -> list[Event]:
    book = OrderBook(BTC)
    events: list[Event] = []
    for input_id, cmd in commands:
        events += book.apply(input_id, cmd)
    return events


def test_trade_reports_in_decimal_strings() -> None:
    events = _book_events([
        ("100-0", Place("bob", "sell", "limit", 15000, 10000)),
        ("101-0", Place("bob", "sell", "limit", 10000, 10100)),
        ("102-0", Place("alice", "buy", "limit", 20000, 10100, client_order_id="c1")),
    ])
    reports = [report_of(BTC, e) for e in events if isinstance(e, Report)]
    taker = [r for r in reports if r.order_id == "102-0"]
    assert [r.exec_type for r in taker] == ["new", "trade", "trade"]
    last = taker[-1]
    last_event = [e for e in events if isinstance(e, Report) and e.order_id == "102-0"][-1]
    assert last.exec_id == f"BTC-USD:{last_event.seq}"
    assert (last.qty, last.cum_qty, last.leaves_qty, last.last_qty, last.last_price) == (
        "2.0000", "2.0000", "0.0000", "0.5000", "101.00")
    # (1.5 * 100 + 0.5 * 101) / 2 = 100.25
    assert last.avg_price == "100.25"
    assert last.status == "filled" and last.liquidity == "taker" and last.trade_id == 2
    assert last.client_order_id == "c1" and last.price == "101.00" and last.ts == 102
    new = taker[0]
    assert (new.last_qty, new.last_price, new.avg_price, new.liquidity, new.trade_id) == (
        None, None, None, None, None)
    maker = [r for r in reports if r.order_id == "100-0"][-1]
    assert (maker.liquidity, maker.status, maker.leaves_qty) == ("maker", "filled", "0.0000")
    assert b'"channel":"executions","type":"update","data":{"exec_id"' in push_frame(last)


def test_market_order_has_null_price_and_expires() -> None:
    events = _book_events([("5-0", Place("alice", "buy", "market", 10000, 0, "IOC"))])
    [report] = [report_of(BTC, e) for e in events if isinstance(e, Report)][-1:]
    assert report.price is None and report.type == "market"
    assert (report.exec_type, report.status, report.reason) == ("expired", "expired",
                                                                "NO_LIQUIDITY")


def test_cancel_rejected_report_has_nulls_and_reason() -> None:
    events = _book_events([("9-0", Cancel("alice", "1-0"))])
    [event] = events
    assert isinstance(event, CancelRejected)
    report = cancel_rejected_of("BTC-USD", event)
    assert (report.exec_type, report.status, report.reason) == (
        "cancel_rejected", "rejected", "UNKNOWN_ORDER")
    assert report.order_id == "1-0" and report.exec_id == f"BTC-USD:{event.seq}"
    assert (report.side, report.qty, report.price, report.cum_qty, report.leaves_qty) == (
        None, None, None, None, None)


def test_status_report_restates_an_open_order() -> None:
    events = _book_events([("1-0", Place("alice", "buy", "limit", 30000, 10000))])
    report = status_of(BTC, next(e for e in events if isinstance(e, Report)))
    assert (report.exec_type, report.exec_id, report.status, report.leaves_qty) == (
        "status", None, "new", "3.0000")


# -- open-orders view ------------------------------------------------------------------------

ACCOUNTS = ("alice", "bob", "carol")


def _random_command(rng: random.Random, book: OrderBook, n: int) -> Command:
    account = rng.choice(ACCOUNTS)
    roll = rng.random()
    if roll < 0.6 or not book.orders:
        return Place(account, rng.choice(("buy", "sell")),  # type: ignore[arg-type]
                     "limit" if rng.random() < 0.9 else "market",
                     rng.randint(1, 5) * 1000, rng.randint(95, 105) * 100,
                     rng.choice(("GTC", "GTC", "IOC")),  # type: ignore[arg-type]
                     client_order_id=f"c{n}" if rng.random() < 0.5 else None)
    victim = rng.choice(list(book.orders.values()))
    owner = victim.account if rng.random() < 0.8 else account
    if roll < 0.8:
        return Cancel(owner, victim.order_id)
    if roll < 0.95:
        return Amend(owner, victim.order_id, qty=victim.qty + rng.randint(-1, 2) * 1000 or None,
                     price=rng.randint(95, 105) * 100)
    return CancelAll(owner)


def _assert_view_matches(view: OpenOrdersView, book: OrderBook) -> None:
    for account in ACCOUNTS:
        expected = sorted((o.order_id, o.qty, o.cum_qty, o.price, o.client_order_id)
                          for o in book.open_orders(account))
        got = sorted((r.order_id, r.qty, r.cum_qty, r.price, r.client_order_id)
                     for _, r in view.open_orders(account, "BTC-USD"))
        assert got == expected, account


@pytest.mark.parametrize("seed", range(5))
def test_view_follows_the_book_and_restarts_from_a_snapshot(seed: int) -> None:
    rng = random.Random(seed)
    book = OrderBook(BTC)
    view = OpenOrdersView(["BTC-USD", "ETH-USD"])
    restarted: OpenOrdersView | None = None
    for n in range(1, 400):
        input_id = f"{1000 + n}-{n % 3}"
        events = book.apply(input_id, _random_command(rng, book, n))
        view.apply("BTC-USD", events, input_id)
        if restarted is not None:
            restarted.apply("BTC-USD", events, input_id)
        if n == 200:
            snap = decode_snapshot(encode_snapshot(take_snapshot(book, input_id, "77-0")))
            restarted = OpenOrdersView(["BTC-USD", "ETH-USD"])
            restarted.load_snapshot(snap)
            _assert_view_matches(restarted, book)
        _assert_view_matches(view, book)
    assert restarted is not None
    _assert_view_matches(restarted, book)
    assert view.gaps == 0 and restarted.gaps == 0
    assert view.last_seq("BTC-USD") == book.seq == restarted.last_seq("BTC-USD")
    assert view.open_orders("alice", "ETH-USD") == []


def test_may_be_open_knows_what_the_engine_applied() -> None:
    view = OpenOrdersView(["BTC-USD"])
    book = OrderBook(BTC)
    view.apply("BTC-USD", book.apply("10-0", Place("alice", "buy", "limit", 1000, 10000)), "10-0")
    view.apply("BTC-USD", book.apply("11-0", Place("alice", "buy", "market", 1000, 0)), "11-0")
    assert view.may_be_open("BTC-USD", "10-0")  # resting
    assert not view.may_be_open("BTC-USD", "11-0")  # applied, expired
    assert view.may_be_open("BTC-USD", "12-0")  # not applied yet
    assert view.may_be_open("BTC-USD", "9-99") is False  # applied long ago, not open


def test_entry_ids_compare_numerically() -> None:
    assert parse_id("9-0") < parse_id("10-0") < parse_id("10-1")
    assert parse_id("10-2") < parse_id("10-10")

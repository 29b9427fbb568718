"""Sans-I/O parts of the gateway: logon signatures, token buckets, reports, open-orders view."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from contract.commands import Amend, Cancel, CancelAll, Command, Place
from contract.errors import (
    BAD_SIGNATURE,
    RATE_LIMITED,
    TIMESTAMP_OUT_OF_WINDOW,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
    StreamexError,
)
from contract.events import CancelRejected, Event, Report
from contract.ids import parse_id
from contract.market import DEFAULT_MARKETS
from contract.order_entry import ExecutionReport
from contract.ratelimit import TokenBucket, rate_limited
from contract.settings import Account
from contract.signing import sign
from contract.snapshot import RestingOrder, Snapshot, decode_snapshot, encode_snapshot
from gateway.auth import verify_logon
from gateway.client_ids import InFlightClientIds
from gateway.orders_view import OpenOrdersView
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


@pytest.mark.parametrize(("api_key", "ts", "signature", "reason"), [
    ("alice-key", NOW - 30_001, sign("s3cret", NOW - 30_001, "alice-key"),  # replayed, too old
     TIMESTAMP_OUT_OF_WINDOW),
    ("alice-key", NOW + 30_001, sign("s3cret", NOW + 30_001, "alice-key"),  # from the future
     TIMESTAMP_OUT_OF_WINDOW),
    ("alice-key", NOW, sign("wrong", NOW, "alice-key"), BAD_SIGNATURE),
    ("alice-key", NOW, sign("s3cret", NOW + 1, "alice-key"), BAD_SIGNATURE),  # another ts
    ("alice-key", NOW, "", BAD_SIGNATURE),
    ("alice-key", NOW, "é" * 64, BAD_SIGNATURE),  # non-ASCII
    ("alice-key", NOW - 60_000, sign("wrong", NOW - 60_000, "alice-key"), BAD_SIGNATURE),
    ("nobody", NOW, sign("s3cret", NOW, "nobody"), UNKNOWN_KEY),
    ("", NOW, "", UNKNOWN_KEY),
])
def test_bad_logons_are_unauthenticated_and_say_why(api_key: str, ts: int, signature: str,
                                                     reason: str) -> None:
    with pytest.raises(StreamexError) as caught:
        verify_logon(BY_KEY, api_key, ts, signature, NOW)
    error = caught.value
    assert error.code == UNAUTHENTICATED
    assert (error.reason, error.server_time) == (reason, NOW)
    assert error.message.startswith(f"logon: {reason}: ")
    assert f"server_time {NOW}" in error.message
    assert "s3cret" not in error.message and len(error.message) < 300
    if reason == TIMESTAMP_OUT_OF_WINDOW:
        assert "30001 ms" in error.message and "allowed: 30000 ms" in error.message


# -- token bucket ----------------------------------------------------------------------------


def test_token_bucket_says_when_to_retry() -> None:
    bucket = TokenBucket(rate=20.0, burst=2, now=0.0)
    assert bucket.retry_after_ms(0.0) == 0
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.retry_after_ms(0.0) == 50
    assert bucket.retry_after_ms(0.04) == 10
    assert bucket.retry_after_ms(0.0499) == 1  # rounded up, never 0 while refused
    assert bucket.retry_after_ms(0.05) == 0 and bucket.take(0.05)
    assert bucket.retry_after_ms(0.05, n=5) == 100  # more than the burst: until full
    assert bucket.describe("connection") == "limit 20/s, burst 2 per connection"
    error = rate_limited(bucket, 0.05, "account")
    assert (error.code, error.retry_after_ms) == (RATE_LIMITED, 50)
    assert error.message == ("too many requests on this account (limit 20/s, burst 2 per "
                             "account); retry in 0.050 s")
    assert TokenBucket(0.01, 1, 0.0).describe("account") == "limit 0.01/s, burst 1 per account"
    assert TokenBucket(5_000_000, 10_000_000, 0.0).describe("account") == (
        "limit 5000000/s, burst 10000000 per account")
    assert TokenBucket(2.5, 3, 0.0).describe("connection") == "limit 2.5/s, burst 3 per connection"
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(float("nan"), 1, 0.0)


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
    report = cancel_rejected_of(BTC, event, None)
    assert (report.exec_type, report.status, report.reason) == (
        "cancel_rejected", "rejected", "UNKNOWN_ORDER")
    assert report.order_id == "1-0" and report.exec_id == f"BTC-USD:{event.seq}"
    assert (report.side, report.qty, report.price, report.cum_qty, report.leaves_qty) == (
        None, None, None, None, None)


def _cancel_rejected_reports(commands: list[tuple[str, Command]]
                             ) -> list[tuple[CancelRejected, ExecutionReport]]:
    """Feed a book's events to a view one by one, as the router does; state each rejection."""
    book = OrderBook(BTC)
    view = OpenOrdersView(["BTC-USD"])
    found = []
    for input_id, cmd in commands:
        for event in book.apply(input_id, cmd):
            view.apply_event("BTC-USD", event)
            if isinstance(event, CancelRejected):
                order = view.find("BTC-USD", event.account, event.order_id,
                                  event.client_order_id)
                found.append((event, cancel_rejected_of(BTC, event, order)))
        view.set_applied("BTC-USD", input_id)
    return found


def test_cancel_rejected_of_a_live_order_states_the_order() -> None:
    [(below, r1), (post, r2), (gone, r3), (other, r4)] = _cancel_rejected_reports([
        ("1-0", Place("alice", "sell", "limit", 10000, 10000, client_order_id="s")),
        ("2-0", Place("bob", "buy", "limit", 4000, 10000)),  # alice partially filled
        ("3-0", Amend("alice", client_order_id="s", qty=3000)),  # below the filled 0.4
        ("4-0", Place("alice", "buy", "limit", 10000, 9900, post_only=True,
                      client_order_id="po")),
        ("5-0", Amend("alice", order_id="4-0", price=10000)),  # would take: stays
        ("6-0", Cancel("alice", client_order_id="nope")),
        ("7-0", Amend("bob", client_order_id="s", qty=20000)),  # alice's id, bob's request
    ])
    assert (below.reason, post.reason, gone.reason, other.reason) == (
        "INVALID_QTY", "POST_ONLY_WOULD_TAKE", "UNKNOWN_ORDER", "UNKNOWN_ORDER")
    assert (r1.exec_type, r1.status, r1.order_id, r1.client_order_id, r1.reason) == (
        "cancel_rejected", "partially_filled", "1-0", "s", "INVALID_QTY")
    assert (r1.side, r1.type, r1.tif, r1.price, r1.qty, r1.cum_qty, r1.leaves_qty,
            r1.avg_price) == ("sell", "limit", "GTC", "100.00", "1.0000", "0.4000", "0.6000",
                              "100.00")
    assert (r1.last_qty, r1.last_price, r1.liquidity, r1.trade_id) == (None, None, None, None)
    assert r1.exec_id == f"BTC-USD:{below.seq}" and r1.ts == below.ts == 3
    assert (r2.status, r2.order_id, r2.client_order_id, r2.price, r2.leaves_qty) == (
        "new", "4-0", "po", "99.00", "1.0000")
    for r, e in ((r3, gone), (r4, other)):  # unknown (or another account's): the request's ids
        assert (r.status, r.order_id, r.client_order_id, r.side, r.qty) == (
            "rejected", None, e.client_order_id, None, None)


def test_status_report_restates_an_open_order() -> None:
    events = _book_events([("1-0", Place("alice", "buy", "limit", 30000, 10000))])
    report = status_of(BTC, next(e for e in events if isinstance(e, Report)))
    assert (report.exec_type, report.exec_id, report.status, report.leaves_qty) == (
        "status", None, "new", "3.0000")


# -- section B in reports: stops, GTD, icebergs ---------------------------------------------


def _report(exec_type: str, status: str, *, order_id: str = "7-0", order_type: str = "limit",
            tif: str = "GTC", price: int = 10000, qty: int = 20000, cum_qty: int = 0,
            **fields: Any) -> Report:
    """An engine report of alice's buy (the fields a test does not name are a new order's)."""
    return Report(9, 7, "alice", order_id, "c7", "buy", order_type, tif,  # type: ignore[arg-type]
                  price, qty, exec_type, status, 0, 0, cum_qty,  # type: ignore[arg-type]
                  qty - cum_qty, cum_qty * price, None, None, None, **fields)


def _wire(report: ExecutionReport) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(push_frame(report))["data"]
    return data


def test_reports_carry_stop_expiry_and_display_only_where_the_order_has_them() -> None:
    stop = report_of(BTC, _report("new", "untriggered", order_type="stop_limit", tif="GTD",
                                  price=9950, stop_price=10000, expire_time=NOW + 5,
                                  display_qty=2500))
    assert (stop.type, stop.status, stop.price, stop.stop_price, stop.expire_time,
            stop.display_qty, stop.leaves_qty) == (
        "stop_limit", "untriggered", "99.50", "100.00", NOW + 5, "0.2500", "2.0000")
    wire = _wire(stop)
    assert (wire["stop_price"], wire["expire_time"], wire["display_qty"]) == (
        "100.00", NOW + 5, "0.2500")
    # A plain limit order has none of them: absent from the JSON, not null.
    plain = _wire(report_of(BTC, _report("new", "new")))
    assert not {"stop_price", "expire_time", "display_qty"} & set(plain)
    assert list(plain)[-2:] == ["fee", "fee_asset"]
    # A stop market has no price; its trigger report says "triggered", status "new".
    market = report_of(BTC, _report("triggered", "new", order_type="take_profit_market",
                                    tif="IOC", price=0, stop_price=9000))
    assert (market.exec_type, market.status, market.price, market.stop_price) == (
        "triggered", "new", None, "90.00")
    assert "display_qty" not in _wire(market) and "expire_time" not in _wire(market)
    # GTD alone, an iceberg alone.
    assert set(_wire(report_of(BTC, _report("new", "new", tif="GTD", expire_time=NOW)))) \
        >= {"expire_time"}
    iceberg = _wire(report_of(BTC, _report("new", "new", display_qty=1000)))
    assert iceberg["display_qty"] == "0.1000" and "stop_price" not in iceberg


def test_status_and_cancel_rejected_reports_keep_a_stops_fields() -> None:
    stop = _report("new", "untriggered", order_type="stop_market", tif="IOC", price=0,
                   stop_price=10500)
    status = status_of(BTC, stop)
    assert (status.exec_type, status.status, status.stop_price, status.price) == (
        "status", "untriggered", "105.00", None)
    refusal = CancelRejected(10, 8, "alice", "7-0", None, "8-0", "BAD_REQUEST")
    rejected = cancel_rejected_of(BTC, refusal, stop)
    assert (rejected.exec_type, rejected.status, rejected.stop_price, rejected.reason) == (
        "cancel_rejected", "untriggered", "105.00", "BAD_REQUEST")
    unknown = _wire(cancel_rejected_of(BTC, refusal, None))
    assert "stop_price" not in unknown and unknown["status"] == "rejected"


def test_the_sdk_decodes_reports_with_and_without_section_b_fields() -> None:
    from streamex.client import _execution_decoder

    for report in (report_of(BTC, _report("new", "untriggered", order_type="stop_limit",
                                          stop_price=10000, tif="GTD", expire_time=NOW,
                                          display_qty=500)),
                   report_of(BTC, _report("trade", "partially_filled", cum_qty=500))):
        decoded = _execution_decoder.decode(push_frame(report)).data
        assert decoded == report


def test_view_keeps_an_untriggered_stop_open_until_it_ends() -> None:
    view = OpenOrdersView(["BTC-USD"])
    stop = _report("new", "untriggered", order_type="stop_limit", stop_price=10100)
    view.apply("BTC-USD", [stop], "7-0")
    [(symbol, opened)] = view.open_orders("alice")
    assert (symbol, opened.status, opened.stop_price) == ("BTC-USD", "untriggered", 10100)
    assert view.by_client_id("BTC-USD", "alice", "c7") is opened  # its id is in use
    assert view.may_be_open("BTC-USD", "7-0")  # cancel on disconnect includes it
    triggered = msgspec.structs.replace(stop, seq=10, exec_type="triggered", status="new")
    view.apply_event("BTC-USD", triggered)
    assert status_of(BTC, view.open_orders("alice")[0][1]).status == "new"
    expired = msgspec.structs.replace(stop, seq=11, exec_type="expired", status="expired",
                                      leaves_qty=0, reason="EXPIRED")
    view.apply_event("BTC-USD", expired)
    assert view.open_orders("alice") == [] and not view.may_be_open("BTC-USD", "7-0")
    assert view.by_client_id("BTC-USD", "alice", "c7") is None
    assert view.gaps == 0


def test_view_from_a_snapshot_states_stops_and_icebergs_as_their_reports_do() -> None:
    orders = [
        RestingOrder("5-0", "alice", "ice", "sell", 10100, 30000, 5000, 5000 * 10100, False,
                     "cancel_taker", 1, type="limit", tif="GTD", expire_time=NOW + 9,
                     display_qty=2000, visible=1000),
        RestingOrder("6-0", "alice", None, "buy", 0, 10000, 0, 0, False, "cancel_taker", 2,
                     type="stop_market", tif="IOC", stop_price=10500, untriggered=True),
        RestingOrder("7-0", "bob", "tp", "sell", 9900, 10000, 0, 0, False, "cancel_taker", 3,
                     type="take_profit_limit", tif="GTC", stop_price=9800, untriggered=True),
    ]
    snap = Snapshot(3, "BTC-USD", "7-0", "3-0", 4, 1, 3, orders)
    view = OpenOrdersView(["BTC-USD"])
    view.load_snapshot(decode_snapshot(encode_snapshot(snap)))
    alice = [status_of(BTC, r) for _, r in view.open_orders("alice")]
    assert [(r.order_id, r.type, r.tif, r.status, r.price, r.stop_price, r.qty, r.cum_qty,
             r.leaves_qty, r.display_qty, r.expire_time) for r in alice] == [
        ("5-0", "limit", "GTD", "partially_filled", "101.00", msgspec.UNSET, "3.0000",
         "0.5000", "2.5000", "0.2000", NOW + 9),  # the whole iceberg, not its slice
        ("6-0", "stop_market", "IOC", "untriggered", None, "105.00", "1.0000", "0.0000",
         "1.0000", msgspec.UNSET, msgspec.UNSET),
    ]
    [(_, tp)] = view.open_orders("bob")
    assert (tp.type, tp.status, tp.stop_price) == ("take_profit_limit", "untriggered", 9800)
    assert view.by_client_id("BTC-USD", "bob", "tp") is tp
    assert view.last_seq("BTC-USD") == 4 and view.applied("BTC-USD") == (7, 0)


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


def _random_section_b_command(rng: random.Random, book: OrderBook, n: int) -> Command:
    """Stops and take-profits of every type, GTD orders that expire within the flow,
    icebergs, amends of triggers: what section B adds to the flow above."""
    roll = rng.random()
    if roll < 0.55 or not book.orders:
        return _random_command(rng, book, n)
    account = rng.choice(ACCOUNTS)
    side = rng.choice(("buy", "sell"))
    if roll < 0.75:
        order_type = rng.choice(("stop_limit", "stop_market", "take_profit_limit",
                                 "take_profit_market"))
        limit = order_type.endswith("_limit")
        gtd = rng.random() < 0.3
        return Place(account, side, order_type,  # type: ignore[arg-type]
                     rng.randint(1, 5) * 1000, rng.randint(95, 105) * 100 if limit else 0,
                     "GTD" if gtd else "GTC" if limit else "IOC",
                     client_order_id=f"s{n}" if rng.random() < 0.5 else None,
                     stop_price=rng.randint(95, 105) * 100,
                     expire_time=1000 + n + rng.randint(1, 40) if gtd else 0)
    if roll < 0.9:
        qty = rng.randint(2, 8) * 1000
        gtd = rng.random() < 0.4
        return Place(account, side, "limit", qty, rng.randint(95, 105) * 100,  # type: ignore[arg-type]
                     "GTD" if gtd else "GTC", expire_time=1000 + n + rng.randint(1, 40)
                     if gtd else 0, display_qty=rng.randint(1, qty // 1000) * 1000
                     if rng.random() < 0.7 else 0)
    waiting = [o for o in book.orders.values() if o.untriggered]
    if not waiting:
        return _random_command(rng, book, n)
    victim = rng.choice(waiting)
    return Amend(victim.account, victim.order_id, stop_price=rng.randint(95, 105) * 100)


def _assert_view_matches_section_b(view: OpenOrdersView, book: OrderBook) -> None:
    for account in ACCOUNTS:
        expected = [(o.order_id, o.type, o.tif, o.qty, o.cum_qty, o.price, o.stop_price,
                     o.expire_time, o.display, "untriggered" if o.untriggered else
                     "partially_filled" if o.cum_qty else "new", o.client_order_id)
                    for o in sorted(book.open_orders(account), key=lambda o: parse_id(
                        o.order_id))]
        got = [(r.order_id, r.type, r.tif, r.qty, r.cum_qty, r.price, r.stop_price,
                r.expire_time, r.display_qty, r.status, r.client_order_id)
               for _, r in view.open_orders(account, "BTC-USD")]
        assert got == expected, account


@pytest.mark.parametrize("seed", range(4))
def test_view_follows_stops_icebergs_and_gtd_orders_and_restarts_from_a_snapshot(
        seed: int) -> None:
    rng = random.Random(seed)
    book = OrderBook(BTC)
    view = OpenOrdersView(["BTC-USD"])
    restarted: OpenOrdersView | None = None
    seen: set[str] = set()
    for n in range(1, 500):
        input_id = f"{1000 + n}-{n % 3}"
        events = book.apply(input_id, _random_section_b_command(rng, book, n))
        seen |= {e.status for e in events if isinstance(e, Report)}
        seen |= {e.exec_type for e in events if isinstance(e, Report)}
        seen |= {e.reason for e in events if isinstance(e, Report) and e.reason}
        view.apply("BTC-USD", events, input_id)
        if restarted is not None:
            restarted.apply("BTC-USD", events, input_id)
        if n == 250:
            snap = decode_snapshot(encode_snapshot(take_snapshot(book, input_id, "77-0")))
            restarted = OpenOrdersView(["BTC-USD"])
            restarted.load_snapshot(snap)
            _assert_view_matches_section_b(restarted, book)
        _assert_view_matches_section_b(view, book)
    assert restarted is not None
    _assert_view_matches_section_b(restarted, book)
    assert {"untriggered", "triggered", "EXPIRED"} <= seen  # the flow reached them
    assert view.gaps == 0 and restarted.gaps == 0


def test_may_be_open_knows_what_the_engine_applied() -> None:
    view = OpenOrdersView(["BTC-USD"])
    book = OrderBook(BTC)
    view.apply("BTC-USD", book.apply("10-0", Place("alice", "buy", "limit", 1000, 10000)), "10-0")
    view.apply("BTC-USD", book.apply("11-0", Place("alice", "buy", "market", 1000, 0)), "11-0")
    assert view.may_be_open("BTC-USD", "10-0")  # resting
    assert not view.may_be_open("BTC-USD", "11-0")  # applied, expired
    assert view.may_be_open("BTC-USD", "12-0")  # not applied yet
    assert view.may_be_open("BTC-USD", "9-99") is False  # applied long ago, not open


def test_view_indexes_open_orders_by_client_order_id() -> None:
    view = OpenOrdersView(["BTC-USD"])
    book = OrderBook(BTC)
    for input_id, cmd in [
        ("1-0", Place("alice", "buy", "limit", 1000, 10000, client_order_id="a")),
        ("2-0", Place("bob", "buy", "limit", 1000, 10000, client_order_id="a")),
        ("3-0", Place("alice", "buy", "market", 1000, 0, client_order_id="m")),
    ]:
        view.apply("BTC-USD", book.apply(input_id, cmd), input_id)
    alice_a = view.by_client_id("BTC-USD", "alice", "a")
    assert alice_a is not None and alice_a.order_id == "1-0"
    bob_a = view.by_client_id("BTC-USD", "bob", "a")
    assert bob_a is not None and bob_a.order_id == "2-0"
    assert view.by_client_id("BTC-USD", "alice", "m") is None  # expired at once
    assert view.find("BTC-USD", "alice", "1-0", None) is alice_a
    assert view.find("BTC-USD", "alice", "1-0", "other") is None
    assert view.find("BTC-USD", "bob", "1-0", None) is None  # not bob's
    view.apply("BTC-USD", book.apply("4-0", Cancel("alice", client_order_id="a")), "4-0")
    assert view.by_client_id("BTC-USD", "alice", "a") is None
    assert view.applied("BTC-USD") == (4, 0)


def test_in_flight_client_ids_are_held_until_the_view_applied_the_place() -> None:
    view = OpenOrdersView(["BTC-USD"])
    book = OrderBook(BTC)
    ids = InFlightClientIds(view, max_held=3)
    assert not ids.in_use("BTC-USD", "alice", "c1")
    assert ids.hold("BTC-USD", "alice", "c1")
    assert ids.in_use("BTC-USD", "alice", "c1")  # submitted, XADD not returned yet
    assert not ids.in_use("BTC-USD", "bob", "c1")
    ids.added("BTC-USD", "alice", "c1", "10-0")
    assert ids.in_use("BTC-USD", "alice", "c1")  # XADDed, the engine has not applied it
    view.apply("BTC-USD", book.apply("10-0", Place("alice", "buy", "limit", 1000, 10000,
                                                   client_order_id="c1")), "10-0")
    assert ids.held("BTC-USD") == 0
    assert ids.in_use("BTC-USD", "alice", "c1")  # now the view knows it open
    view.apply("BTC-USD", book.apply("11-0", Cancel("alice", client_order_id="c1")), "11-0")
    assert not ids.in_use("BTC-USD", "alice", "c1")
    # A place applied before its XADD reply is read is not held past it.
    assert ids.hold("BTC-USD", "alice", "c2")
    view.apply("BTC-USD", book.apply("12-0", Place("alice", "buy", "market", 1000, 0,
                                                   client_order_id="c2")), "12-0")
    ids.added("BTC-USD", "alice", "c2", "12-0")
    assert not ids.in_use("BTC-USD", "alice", "c2")
    # A failed XADD releases the id; bounded: beyond max_held nothing more is held.
    assert ids.hold("BTC-USD", "alice", "f")
    ids.release("BTC-USD", "alice", "f")
    assert not ids.in_use("BTC-USD", "alice", "f")
    assert all(ids.hold("BTC-USD", "carol", f"x{i}") for i in range(3))
    assert not ids.hold("BTC-USD", "carol", "x3") and ids.held("BTC-USD") == 3
    for i in range(3):
        ids.added("BTC-USD", "carol", f"x{i}", f"20-{i}")
    view.set_applied("BTC-USD", "20-1")
    assert ids.held("BTC-USD") == 1 and ids.hold("BTC-USD", "carol", "x3")


def test_entry_ids_compare_numerically() -> None:
    assert parse_id("9-0") < parse_id("10-0") < parse_id("10-1")
    assert parse_id("10-2") < parse_id("10-10")

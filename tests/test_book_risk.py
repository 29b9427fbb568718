"""The matching core's side of the risk stage: fees, market buys by budget, forwarded commands.

Exact events through the ``test_book`` harness (contiguous seqs, ts, ``_check``).
The fee market charges 10 bps to makers and 20 bps to takers with one quote
unit per tick x lot, so a fill's notional is ``price * qty`` units and fees
round up a lot: the rounding is per order, cumulative (``Market.fee``).
"""

from __future__ import annotations

from typing import cast

import msgspec
from test_book import Harness, OrderSpec, levels

from contract.commands import Cancel, Place, encode_command
from contract.events import CancelRejected, Event, InputRejected, Report, Trade
from contract.market import Market
from contract.snapshot import decode_snapshot
from contract.streams import forward_entry
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import restore_book, take_snapshot

FEES = Market("TST-USD", "TST", "USD", "1", "1", "1", "1000", "1", "10000",
              maker_fee="0.001", taker_fee="0.002")


def fees_of(events: list[Event], order_id: str) -> list[int]:
    return [e.fee for e in events if isinstance(e, Report) and e.order_id == order_id
            and e.exec_type == "trade"]


def taker_reports(events: list[Event], order_id: str) -> list[Report]:
    return [e for e in events if isinstance(e, Report) and e.order_id == order_id]


# -- fees ---------------------------------------------------------------------


def test_fees_round_up_per_order_cumulatively_across_fills() -> None:
    h = Harness(FEES)
    a = h.rest("A", "sell", 3, 100)
    b = h.rest("B", "sell", 2, 101)
    c = h.rest("C", "sell", 4, 103)
    t, events = h.place("T", "buy", 9, 103)
    # Taker at 20 bps: exact 0.6, then 0.6 + 0.404 = 1.004, then + 0.824 = 1.828;
    # it has paid ceil() of that after each fill: 1, 2, 2.
    assert fees_of(events, t.order_id) == [1, 1, 0]
    assert sum(fees_of(events, t.order_id)) == 2  # ceil(1.828): rounded up once in total
    # Each maker at 10 bps on its own fill: 0.3, 0.202, 0.412 -> 1 each.
    assert [fees_of(events, o.order_id) for o in (a, b, c)] == [[1], [1], [1]]
    assert all(e.fee == 0 for e in events if isinstance(e, Report) and e.exec_type != "trade")


def test_a_resting_makers_fees_carry_over_its_fills_and_a_snapshot() -> None:
    h = Harness(FEES)
    a = h.rest("A", "sell", 20, 100)
    paid = []
    for qty in (3, 4, 5):  # maker exact 0.3, 0.7, 1.2 -> has paid 1, 1, 2
        _, events = h.place("T", "buy", qty, 100)
        paid += fees_of(events, a.order_id)
    assert paid == [1, 0, 1]
    assert h.book.orders[a.order_id].fee_num == 1200 * FEES.maker_num
    restored = restore_book(FEES, decode_snapshot(
        msgspec.msgpack.encode(take_snapshot(h.book))))
    fresh = restored.apply("2000-0", Place("T", "buy", "limit", 8, 100))
    again = h.book.apply("2000-0", Place("T", "buy", "limit", 8, 100))
    assert fresh == again and fees_of(again, a.order_id) == [0]  # exact 2.0: 2 paid already


def test_no_fee_market_reports_fee_zero() -> None:
    h = Harness()
    h.rest("A", "sell", 3, 100)
    _, events = h.place("T", "buy", 3, 100)
    assert [e.fee for e in events if isinstance(e, Report)] == [0, 0, 0]


# -- market buys by budget ----------------------------------------------------


def budget_buy(h: Harness, quote_qty: int, account: str = "T",
               stp: str = "cancel_taker") -> tuple[OrderSpec, list[Event]]:
    h.ms += 1
    h.input_id = f"{h.ms}-0"
    events = h.book.apply(h.input_id, Place(account, "buy", "market", 0, 0, "IOC", False, None,
                                            stp, quote_qty))  # type: ignore[arg-type]
    h.book._check()
    h.first_seq = h.seq + 1
    assert [e.seq for e in events] == list(range(h.first_seq, h.first_seq + len(events)))
    h.seq += len(events)
    return OrderSpec(h.input_id, account, "buy", 0, 0, "market", "IOC"), events


def budget_report(o: OrderSpec, exec_type: str, status: str, cum_qty: int, cum_notional: int,
                  *, last: tuple[int, int, int] | None = None, fee: int = 0,
                  reason: str | None = None) -> Report:
    last_qty, last_price, trade_id = last or (0, 0, None)
    return Report(0, 0, o.account, o.order_id, None, "buy", "market", "IOC", 0, cum_qty,
                  exec_type, status, last_qty, last_price, cum_qty, 0,  # type: ignore[arg-type]
                  cum_notional, "taker" if last else None, trade_id, reason, fee)


def test_budget_buy_exact_fit_is_filled_with_nothing_left() -> None:
    h = Harness(FEES)
    a = h.rest("A", "sell", 3, 100)
    b = h.rest("B", "sell", 5, 101)
    # 3 @ 100: 300 + ceil(0.6) = 301; then 2 @ 101: 202 + ceil(0.6 + 0.404) - 1 = 203.
    o, events = budget_buy(h, 301 + 203)
    h.expect(events, [
        budget_report(o, "new", "new", 0, 0),
        Trade(0, 0, 1, 100, 3, "buy", a.order_id, o.order_id),
        msgspec.structs.replace(a.filled(3, 100, 3, 300, "maker", 1), fee=1),
        budget_report(o, "trade", "partially_filled", 3, 300, last=(3, 100, 1), fee=1),
        Trade(0, 0, 2, 101, 2, "buy", b.order_id, o.order_id),
        msgspec.structs.replace(b.filled(2, 101, 2, 202, "maker", 2), fee=1),
        budget_report(o, "trade", "filled", 5, 502, last=(2, 101, 2), fee=1),
        levels(asks=[(100, 0), (101, 3)]),
    ])
    assert h.book.depth("sell") == [(101, 3)]


def test_budget_buy_stops_when_the_next_fill_and_its_fee_would_not_fit() -> None:
    h = Harness(FEES)
    a = h.rest("A", "sell", 3, 100)
    h.rest("B", "sell", 2, 150)
    # 3 @ 100 costs 301; 119 left would buy a lot at 100 (100) but none at 150 (151).
    o, events = budget_buy(h, 420)
    reports = taker_reports(events, o.order_id)
    assert [(r.exec_type, r.status, r.qty, r.cum_qty, r.leaves_qty, r.fee, r.reason)
            for r in reports] == [
        ("new", "new", 0, 0, 0, 0, None),
        ("trade", "partially_filled", 3, 3, 0, 1, None),
        ("expired", "expired", 3, 3, 0, 0, "NO_LIQUIDITY"),
    ]
    assert h.book.depth("sell") == [(150, 2)]
    assert [e.maker_order_id for e in events if isinstance(e, Trade)] == [a.order_id]


def test_budget_buy_that_spends_what_lots_allow_at_its_price_is_filled() -> None:
    h = Harness(FEES)
    h.rest("A", "sell", 10, 100)
    # 4 lots cost 400 + ceil(0.8) = 401; a fifth would cost 501 > 450.
    o, events = budget_buy(h, 450)
    reports = taker_reports(events, o.order_id)
    assert [(r.exec_type, r.status, r.qty, r.last_qty, r.fee) for r in reports] == [
        ("new", "new", 0, 0, 0), ("trade", "filled", 4, 4, 1)]
    assert h.book.depth("sell") == [(100, 6)]


def test_budget_buy_below_one_lot_or_on_an_empty_book_expires_with_nothing_filled() -> None:
    h = Harness(FEES)
    o, events = budget_buy(h, 1000)
    h.expect(events, [budget_report(o, "new", "new", 0, 0),
                      budget_report(o, "expired", "expired", 0, 0, reason="NO_LIQUIDITY")])
    h.rest("A", "sell", 3, 100)
    o, events = budget_buy(h, 100)  # one lot costs 100 + ceil(0.2) = 101
    h.expect(events, [budget_report(o, "new", "new", 0, 0),
                      budget_report(o, "expired", "expired", 0, 0, reason="NO_LIQUIDITY")])
    assert h.book.depth("sell") == [(100, 3)]


def test_budget_buy_that_runs_the_book_out_expires_no_liquidity() -> None:
    h = Harness(FEES)
    h.rest("A", "sell", 2, 100)
    o, events = budget_buy(h, 10_000)
    reports = taker_reports(events, o.order_id)
    assert [(r.exec_type, r.status, r.cum_qty, r.reason) for r in reports] == [
        ("new", "new", 0, None), ("trade", "partially_filled", 2, None),
        ("expired", "expired", 2, "NO_LIQUIDITY")]


def test_budget_buy_self_trade_prevention_as_for_other_market_orders() -> None:
    h = Harness(FEES)
    own = h.rest("T", "sell", 2, 100)
    h.rest("A", "sell", 2, 101)
    o, events = budget_buy(h, 10_000)  # cancel_taker: stops at its own ask
    assert [(r.exec_type, r.reason) for r in taker_reports(events, o.order_id)] == [
        ("new", None), ("expired", "STP")]
    o, events = budget_buy(h, 10_000, stp="cancel_maker")  # own ask canceled, then fills
    assert [(r.exec_type, r.reason) for r in taker_reports(events, own.order_id)] == [
        ("canceled", "STP")]
    assert [(r.exec_type, r.cum_qty) for r in taker_reports(events, o.order_id)] == [
        ("new", 0), ("trade", 2), ("expired", 2)]


def test_invalid_budget_orders_are_rejected_bad_request() -> None:
    h = Harness(FEES)
    h.rest("A", "sell", 2, 100)
    bad = [
        Place("T", "sell", "market", 0, quote_qty=500),  # a sell
        Place("T", "buy", "limit", 0, 100, quote_qty=500),  # a limit
        Place("T", "buy", "market", 2, quote_qty=500),  # qty and quote_qty
        Place("T", "buy", "market", 0, tif="FOK", quote_qty=500),  # all or nothing: never
        Place("T", "buy", "market", 0, quote_qty=-5),
    ]
    for cmd in bad:
        events = h.apply(cmd)
        assert [(type(e).__name__, getattr(e, "status", None), getattr(e, "reason", None))
                for e in events] == [("Report", "rejected", "BAD_REQUEST")], cmd
    events = h.apply(Place("T", "buy", "market", 0))  # neither qty nor quote_qty
    assert [(e.status, e.reason) for e in events if isinstance(e, Report)] == [
        ("rejected", "INVALID_QTY")]
    assert h.book.depth("sell") == [(100, 2)]


# -- commands forwarded by the risk stage -------------------------------------


def forwarded(cmd: Place | Cancel, shard: int, risk_seq: int, order_id: str) -> list[bytes]:
    return forward_entry(encode_command(cmd), shard, risk_seq, order_id)


def feed(book: OrderBook, *entries: tuple[str, list[bytes]]) -> list[Event]:
    events: list[Event] = []
    apply_entries(book, [[entry_id.encode(), fields] for entry_id, fields in entries], events)
    book._check()
    return events


def test_forwarded_place_uses_its_own_id_and_the_entry_time_and_applies_once() -> None:
    book = OrderBook(FEES)
    place = forwarded(Place("A", "buy", "limit", 2, 100), 3, 5, "1600000000000-4-3")
    events = feed(book, ("1700000000123-0", place))
    assert [(e.seq, e.ts, getattr(e, "order_id", None)) for e in events] == [
        (1, 1700000000123, "1600000000000-4-3"), (2, 1700000000123, None)]
    assert book.risk_seqs == {3: 5} and "1600000000000-4-3" in book.orders
    # Forwarded again (the risk engine restarted), in the same batch and later: dropped.
    assert feed(book, ("1700000000124-0", place), ("1700000000125-0", place)) == []
    older = forwarded(Place("A", "buy", "limit", 1, 99), 3, 4, "1600000000000-3-3")
    assert feed(book, ("1700000000126-0", older)) == []
    assert book.seq == 2 and book.depth("buy") == [(100, 2)]
    # Another shard's seqs are its own; a gap is fine (only "above the highest" counts).
    other = forwarded(Place("B", "buy", "limit", 1, 99), 1, 5, "1600000000000-1-1")
    jump = forwarded(Place("B", "buy", "limit", 1, 98), 3, 9, "1600000000000-9-3")
    events = feed(book, ("1700000000127-0", other), ("1700000000127-1", jump))
    assert [e.order_id for e in events if isinstance(e, Report)] == [
        "1600000000000-1-1", "1600000000000-9-3"]
    assert book.risk_seqs == {1: 5, 3: 9}


def test_forwarded_cancel_rejection_names_the_forwarded_request_id() -> None:
    book = OrderBook(FEES)
    cancel = forwarded(Cancel("A", "9-9"), 0, 1, "1600000000000-7")
    [rejected] = feed(book, ("1700000000200-3", cancel))
    assert rejected == CancelRejected(1, 1700000000200, "A", "9-9", None, "1600000000000-7",
                                      "UNKNOWN_ORDER")


def test_malformed_forwarded_entries_are_rejected_bad_request() -> None:
    book = OrderBook(FEES)
    cmd = encode_command(Place("A", "buy", "limit", 1, 100))
    bad_seq = [b"c", cmd, b"r", b"12", b"i", b"1-1"]
    no_id = [b"c", cmd, b"r", b"0:1"]
    events = feed(book, ("50-0", bad_seq), ("50-1", no_id))
    assert events == [InputRejected(1, 50, "50-0", "BAD_REQUEST"),
                      InputRejected(2, 50, "50-1", "BAD_REQUEST")]
    assert book.risk_seqs == {}
    # A well-formed forward of an undecodable command: answered under its id, once.
    garbage = [b"c", b"\xc1", b"r", b"0:1", b"i", b"1600000000000-0"]
    assert feed(book, ("51-0", garbage), ("52-0", garbage)) == [
        InputRejected(3, 51, "1600000000000-0", "BAD_REQUEST")]
    assert book.risk_seqs == {0: 1}


def test_a_plain_entry_with_extra_fields_is_applied_as_before() -> None:
    book = OrderBook(FEES)
    events = feed(book, ("60-0", [b"x", b"y", b"c", encode_command(Place("A", "buy", "limit",
                                                                           1, 100))]))
    assert [getattr(e, "order_id", None) for e in events] == ["60-0", None]


class BuggyBook:
    """A book whose matching has a bug: ``apply_into`` raises half-way through a command
    (after taking a seq and emitting an event); everything else is the real book's."""

    def __init__(self, book: OrderBook) -> None:
        object.__setattr__(self, "_book", book)

    def apply_into(self, input_id: str, cmd: object, events: list[object],
                   ts: int | None = None) -> None:
        self._book.seq += 1
        events.append("half an answer")
        raise RuntimeError("a bug")

    def __getattr__(self, name: str) -> object:
        return getattr(self._book, name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._book, name, value)


def test_a_command_that_crashes_the_book_is_answered_to_its_account() -> None:
    """A matching bug (an exception while applying) must not leave the account without an
    answer, nor the risk stage with a hold it never releases: a place is reported rejected
    INTERNAL under its own id, a cancel or amend cancel_rejected, and the book is unchanged."""
    book = OrderBook(FEES)
    feed(book, ("70-0", [b"c", encode_command(Place("M", "sell", "limit", 5, 100))]))
    place = forwarded(Place("A", "buy", "limit", 2, 100, client_order_id="c1"), 0, 1,
                      "1600000000000-2")
    market = [b"c", encode_command(Place("B", "buy", "market", 1))]
    cancel = forwarded(Cancel("A", "70-0"), 0, 2, "1600000000000-3")
    events: list[Event] = []
    apply_entries(cast(OrderBook, BuggyBook(book)),
                  [[i.encode(), f] for i, f in (("71-0", place), ("71-1", market),
                                                ("71-2", cancel))], events)
    book._check()
    assert events == [
        Report(3, 71, "A", "1600000000000-2", "c1", "buy", "limit", "GTC", 100, 2, "rejected",
               "rejected", 0, 0, 0, 0, 0, None, None, "INTERNAL"),
        Report(4, 71, "B", "71-1", None, "buy", "market", "IOC", 0, 1, "rejected", "rejected",
               0, 0, 0, 0, 0, None, None, "INTERNAL"),
        CancelRejected(5, 71, "A", "70-0", None, "1600000000000-3", "INTERNAL"),
    ]
    assert book.risk_seqs == {0: 2} and book.depth("sell") == [(100, 5)]

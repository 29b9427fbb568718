"""Unit tests of the order book for PROTOCOL section B: stops, take-profits, GTD, icebergs.

Exact events through the ``test_book`` harness (contiguous ``seq``, the input
entry's ``ts``, ``OrderBook._check()`` after every command). Input ids are
``"<1001, 1002, ...>-0"``, so the clock of the n-th command is ``1000 + n`` ms.
"""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from test_book import Harness, OrderSpec, fill, levels

from contract.commands import (
    LIMIT_TYPES,
    Amend,
    Cancel,
    CancelAll,
    Clock,
    Command,
    OrderType,
    Place,
    Side,
    StpMode,
    Tif,
    report_tif,
)
from contract.events import Event, ExecType, Liquidity, Report, Status
from contract.snapshot import decode_snapshot, encode_snapshot
from matching.snapshot import restore_book, take_snapshot


@dataclasses.dataclass(frozen=True)
class Spec(OrderSpec):
    """An order with section B's fields; its reports carry them."""

    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0

    def report(self, exec_type: ExecType, status: Status, *, cum_qty: int = 0,
               leaves: int = 0, cum_notional: int = 0, last_qty: int = 0, last_price: int = 0,
               liquidity: Liquidity | None = None, trade_id: int | None = None,
               reason: str | None = None) -> Report:
        return msgspec.structs.replace(
            super().report(exec_type, status, cum_qty=cum_qty, leaves=leaves,
                           cum_notional=cum_notional, last_qty=last_qty,
                           last_price=last_price, liquidity=liquidity, trade_id=trade_id,
                           reason=reason),
            stop_price=self.stop_price, expire_time=self.expire_time,
            display_qty=self.display_qty)

    def untriggered(self) -> Report:
        return self.report("new", "untriggered", leaves=self.qty)

    def triggered(self) -> Report:
        return self.report("triggered", "new", leaves=self.qty)

    def replaced_untriggered(self) -> Report:
        return self.report("replaced", "untriggered", leaves=self.qty)


def place(h: Harness, account: str, side: Side, type_: OrderType, qty: int, price: int = 0,
          *, tif: Tif = "GTC", stop_price: int = 0, expire_time: int = 0, display_qty: int = 0,
          stp: StpMode = "cancel_taker", coid: str | None = None,
          post_only: bool = False) -> tuple[Spec, list[Event]]:
    """Place any order; its spec states the fields its reports carry."""
    events = h.apply(Place(account, side, type_, qty, price, tif, post_only, coid, stp, 0,
                           stop_price, expire_time, display_qty))
    spec = Spec(h.input_id, account, side, qty, price if type_ in LIMIT_TYPES else 0, type_,
                report_tif(type_, tif), coid, stop_price,  # type: ignore[arg-type]
                expire_time, display_qty)
    return spec, events


def queue(h: Harness) -> list[str]:
    """Order ids of the book in priority order (bids, asks), then the untriggered stops."""
    return [r.order_id for r in take_snapshot(h.book).orders]


# -- stops and take-profits ---------------------------------------------------


def test_sell_stop_market_triggered_by_a_trade_at_its_stop_fills_against_the_bids() -> None:
    h = Harness()
    b1 = h.rest("B", "buy", 5, 100)
    b2 = h.rest("C", "buy", 5, 99)
    stop, events = place(h, "A", "sell", "stop_market", 6, stop_price=100)
    h.expect(events, [stop.untriggered()])  # off-book: no book update
    assert h.book.depth("buy") == [(100, 5), (99, 5)]
    assert h.open("A") == [(stop.order_id, 0, 6, 0)]
    seller, events = place(h, "D", "sell", "limit", 1, 100)
    h.expect(events, [
        seller.new(),
        *fill(1, b1, seller, 1, 100, maker_cum=1, taker_cum=1),
        stop.triggered(),
        *fill(2, b1, stop, 4, 100, maker_cum=5, taker_cum=4),
        *fill(3, b2, stop, 2, 99, maker_cum=2, taker_cum=6, taker_notional=400 + 198),
        levels(bids=[(100, 0), (99, 3)]),
    ])
    assert h.open("A") == []


def test_stops_one_trade_triggers_enter_in_placement_order() -> None:
    h = Harness()
    bid = h.rest("B", "buy", 10, 99)
    first, _ = place(h, "A", "sell", "stop_market", 2, stop_price=99)
    second, _ = place(h, "C", "sell", "stop_market", 3, stop_price=100)  # nearer, placed later
    seller, events = place(h, "D", "sell", "limit", 1, 99)
    h.expect(events, [
        seller.new(),
        *fill(1, bid, seller, 1, 99, maker_cum=1, taker_cum=1),
        first.triggered(),
        *fill(2, bid, first, 2, 99, maker_cum=3, taker_cum=2),
        second.triggered(),
        *fill(3, bid, second, 3, 99, maker_cum=6, taker_cum=3),
        levels(bids=[(99, 4)]),
    ])


def test_a_cascade_runs_breadth_first() -> None:
    """Stops the first trade triggers all run before one that a triggered stop's fill set
    off, whatever their types."""
    h = Harness()
    b100 = h.rest("B", "buy", 2, 100)
    b99 = h.rest("C", "buy", 10, 99)
    s1, _ = place(h, "A", "sell", "stop_market", 2, stop_price=100)
    s2, _ = place(h, "D", "sell", "stop_limit", 1, 95, stop_price=100)
    s3, _ = place(h, "E", "sell", "stop_market", 1, stop_price=99)
    seller, events = place(h, "F", "sell", "limit", 1, 100)
    h.expect(events, [
        seller.new(),
        *fill(1, b100, seller, 1, 100, maker_cum=1, taker_cum=1),
        s1.triggered(),
        *fill(2, b100, s1, 1, 100, maker_cum=2, taker_cum=1),
        *fill(3, b99, s1, 1, 99, maker_cum=1, taker_cum=2, taker_notional=199),
        s2.triggered(),  # triggered by the first print, before s3 (by s1's print at 99)
        *fill(4, b99, s2, 1, 99, maker_cum=2, taker_cum=1),
        s3.triggered(),
        *fill(5, b99, s3, 1, 99, maker_cum=3, taker_cum=1),
        levels(bids=[(100, 0), (99, 7)]),
    ])


def test_no_stop_triggers_before_the_first_trade_and_one_already_crossed_triggers_at_once(
        ) -> None:
    h = Harness()
    ask = h.rest("B", "sell", 5, 101)
    early, events = place(h, "A", "buy", "stop_market", 1, stop_price=1)
    h.expect(events, [early.untriggered()])  # any price would meet it: there is none yet
    buyer, events = place(h, "C", "buy", "limit", 1, 101)
    h.expect(events, [
        buyer.new(),
        *fill(1, ask, buyer, 1, 101, maker_cum=1, taker_cum=1),
        early.triggered(),
        *fill(2, ask, early, 1, 101, maker_cum=2, taker_cum=1),
        levels(asks=[(101, 3)]),
    ])
    late, events = place(h, "D", "buy", "stop_limit", 2, 101, stop_price=100)
    h.expect(events, [
        late.untriggered(),
        late.triggered(),  # the last trade (101) is at or above 100 already
        *fill(3, ask, late, 2, 101, maker_cum=4, taker_cum=2),
        levels(asks=[(101, 1)]),
    ])


def test_take_profits_trigger_the_other_way_round_and_a_triggered_limit_rests_behind() -> None:
    h = Harness()
    bid = h.rest("B", "buy", 10, 100)
    ask = h.rest("C", "sell", 10, 102)
    tp_sell, events = place(h, "A", "sell", "take_profit_limit", 1, 101, stop_price=102)
    h.expect(events, [tp_sell.untriggered()])
    tp_buy, _ = place(h, "D", "buy", "take_profit_market", 1, stop_price=100)
    buyer, events = place(h, "E", "buy", "limit", 1, 102)
    h.expect(events, [
        buyer.new(),
        *fill(1, ask, buyer, 1, 102, maker_cum=1, taker_cum=1),
        tp_sell.triggered(),  # at or above 102; the take-profit buy waits for 100 or less
        levels(asks=[(101, 1), (102, 9)]),  # its limit did not cross: it rests
    ])
    seller, events = place(h, "F", "sell", "limit", 1, 100)
    h.expect(events, [
        seller.new(),
        *fill(2, bid, seller, 1, 100, maker_cum=1, taker_cum=1),
        tp_buy.triggered(),
        *fill(3, tp_sell, tp_buy, 1, 101, maker_cum=1, taker_cum=1),
        levels(bids=[(100, 9)], asks=[(101, 0)]),
    ])


def test_amend_of_a_stop_price_moves_it_behind_and_may_trigger_it_at_once() -> None:
    h = Harness()
    h.rest("B", "buy", 1, 100)
    b98 = h.rest("C", "buy", 10, 98)
    place(h, "X", "sell", "limit", 1, 100)  # last trade: 100
    s1, _ = place(h, "A", "sell", "stop_market", 1, stop_price=99)
    s2, _ = place(h, "D", "sell", "stop_market", 1, stop_price=99)
    events = h.apply(Amend("A", s1.order_id, stop_price=98))
    s1 = dataclasses.replace(s1, stop_price=98)
    h.expect(events, [s1.replaced_untriggered()])
    assert queue(h) == [b98.order_id, s2.order_id, s1.order_id]
    seller, events = place(h, "E", "sell", "limit", 1, 98)
    h.expect(events, [
        seller.new(),
        *fill(2, b98, seller, 1, 98, maker_cum=1, taker_cum=1),
        s2.triggered(),  # first: s1 lost its place when its stop price changed
        *fill(3, b98, s2, 1, 98, maker_cum=2, taker_cum=1),
        s1.triggered(),
        *fill(4, b98, s1, 1, 98, maker_cum=3, taker_cum=1),
        levels(bids=[(98, 7)]),
    ])
    s3, events = place(h, "A", "sell", "stop_limit", 2, 97, stop_price=97)
    h.expect(events, [s3.untriggered()])
    events = h.apply(Amend("A", s3.order_id, qty=1, price=98, stop_price=98))
    s3 = dataclasses.replace(s3, qty=1, price=98, stop_price=98)
    h.expect(events, [
        s3.replaced_untriggered(),
        s3.triggered(),  # the last trade (98) meets the new stop price
        *fill(5, b98, s3, 1, 98, maker_cum=4, taker_cum=1),
        levels(bids=[(98, 6)]),
    ])


def test_amend_rules_of_stops() -> None:
    h = Harness()
    resting = h.rest("B", "buy", 1, 100)
    stop, _ = place(h, "A", "sell", "stop_market", 2, stop_price=99)
    for cmd, reason in ((Amend("B", resting.order_id, stop_price=99), "BAD_REQUEST"),
                        (Amend("A", stop.order_id, price=98), "BAD_REQUEST"),
                        (Amend("A", stop.order_id, stop_price=0), "INVALID_STOP_PRICE"),
                        (Amend("A", stop.order_id), "BAD_REQUEST"),
                        (Amend("A", stop.order_id, qty=0), "INVALID_QTY")):
        events = h.apply(cmd)
        assert isinstance(cmd, Amend)
        h.expect(events, [h.rejected_cancel(cmd.account, cmd.order_id, None, reason)])
    events = h.apply(Amend("A", stop.order_id, qty=1))
    h.expect(events, [dataclasses.replace(stop, qty=1).replaced_untriggered()])


def test_cancel_of_an_untriggered_stop_and_cancel_all_in_priority_order() -> None:
    h = Harness()
    bid = h.rest("B", "buy", 10, 100)
    stop, _ = place(h, "A", "sell", "stop_market", 2, stop_price=100, coid="s1")
    events = h.apply(Cancel("A", client_order_id="s1"))
    h.expect(events, [stop.canceled()])
    seller, events = place(h, "C", "sell", "limit", 1, 100)
    h.expect(events, [seller.new(), *fill(1, bid, seller, 1, 100, maker_cum=1, taker_cum=1),
                      levels(bids=[(100, 9)])])  # the canceled stop did not trigger
    ask = h.rest("A", "sell", 1, 105)
    stop2, _ = place(h, "A", "buy", "stop_limit", 1, 104, stop_price=104)
    rest2 = h.rest("A", "buy", 1, 90)
    events = h.apply(CancelAll("A"))
    h.expect(events, [ask.canceled(), stop2.canceled(), rest2.canceled(),
                      levels(bids=[(90, 0)], asks=[(105, 0)])])
    assert h.open("A") == []


# -- GTD ----------------------------------------------------------------------


def test_gtd_orders_expire_at_a_later_command_earliest_first_and_at_a_clock_entry() -> None:
    h = Harness()
    late, _ = place(h, "A", "buy", "limit", 2, 99, tif="GTD", expire_time=1010)  # at 1001
    soon, _ = place(h, "B", "buy", "limit", 3, 98, tif="GTD", expire_time=1004)  # at 1002
    stop, events = place(h, "C", "sell", "stop_limit", 1, 97, tif="GTD", stop_price=97,
                         expire_time=1004)  # at 1003
    h.expect(events, [stop.untriggered()])
    other, events = place(h, "D", "sell", "limit", 1, 105)  # at 1004: both are due
    h.expect(events, [
        soon.expired("EXPIRED"),
        stop.expired("EXPIRED"),  # the same expire_time, a later priority
        other.new(),
        levels(bids=[(98, 0)], asks=[(105, 1)]),
    ])
    h.ms = 1009  # the engine's clock entry, due at 1010
    events = h.apply(Clock())
    assert h.input_id == "1010-0"
    h.expect(events, [late.expired("EXPIRED"), levels(bids=[(99, 0)])])
    events = h.apply(Clock())
    h.expect(events, [])  # nothing due: a clock entry does nothing else
    assert h.book.depth("buy") == [] and h.open("A") == h.open("C") == []


def test_gtd_order_at_or_past_its_expire_time_is_rejected_expired() -> None:
    h = Harness()
    for expire_time in (1001, 1000):  # the command's clock: 1001, then 1002
        gtd, events = place(h, "A", "buy", "limit", 1, 99, tif="GTD", expire_time=expire_time)
        h.expect(events, [gtd.rejected("EXPIRED")])
    assert h.book.depth("buy") == []


def test_a_gtd_order_partially_filled_expires_with_its_fills() -> None:
    h = Harness()
    gtd, _ = place(h, "A", "sell", "limit", 5, 100, tif="GTD", expire_time=1003)
    buyer, events = place(h, "B", "buy", "limit", 2, 100)
    h.expect(events, [buyer.new(), *fill(1, gtd, buyer, 2, 100, maker_cum=2, taker_cum=2),
                      levels(asks=[(100, 3)])])
    events = h.apply(Clock())
    h.expect(events, [gtd.expired("EXPIRED", cum_qty=2, cum_notional=200),
                      levels(asks=[(100, 0)])])


# -- validation ---------------------------------------------------------------


@pytest.mark.parametrize(("cmd", "reason"), [
    (Place("A", "buy", "stop_limit", 1, 100), "INVALID_STOP_PRICE"),
    (Place("A", "buy", "stop_limit", 1, 0), "INVALID_PRICE"),  # the price is checked first
    (Place("A", "buy", "stop_market", 1, stop_price=10_001), "INVALID_STOP_PRICE"),
    (Place("A", "buy", "limit", 1, 100, stop_price=100), "BAD_REQUEST"),
    (Place("A", "buy", "limit", 1, 100, "GTD"), "INVALID_EXPIRE_TIME"),
    (Place("A", "buy", "limit", 1, 100, expire_time=5_000), "INVALID_EXPIRE_TIME"),
    (Place("A", "sell", "market", 1, 0, "GTD", expire_time=5_000), "BAD_REQUEST"),
    (Place("A", "buy", "limit", 2, 100, display_qty=3), "INVALID_QTY"),
    (Place("A", "buy", "limit", 2, 100, display_qty=-1), "INVALID_QTY"),
    (Place("A", "buy", "limit", 2, 100, "IOC", display_qty=1), "BAD_REQUEST"),
    (Place("A", "buy", "stop_market", 2, stop_price=100, display_qty=1), "BAD_REQUEST"),
    (Place("A", "buy", "stop_limit", 1, 100, post_only=True, stop_price=100), "BAD_REQUEST"),
    (Place("A", "sell", "stop_market", 0, quote_qty=500, stop_price=100), "BAD_REQUEST"),
    (Place("A", "buy", "stop_limit", 0, 100, quote_qty=500, stop_price=100), "BAD_REQUEST"),
    (Place("A", "buy", "stop_market", 0, tif="FOK", quote_qty=500, stop_price=100),
     "BAD_REQUEST"),
], ids=["no-stop-price", "stop-no-price", "stop-out-of-band", "stop-price-on-limit",
        "gtd-no-expiry", "expiry-without-gtd", "gtd-market", "display-above-qty",
        "display-negative", "display-ioc", "display-stop-market", "post-only-stop",
        "budget-stop-sell", "budget-stop-limit", "budget-stop-fok"])
def test_invalid_section_b_orders_are_rejected_with_the_first_broken_rule(
        cmd: Place, reason: str) -> None:
    h = Harness()
    events = h.apply(cmd)
    expected = Spec(h.input_id, cmd.account, cmd.side, cmd.qty,
                    cmd.price if cmd.type in LIMIT_TYPES else 0, cmd.type,
                    report_tif(cmd.type, cmd.tif), None, cmd.stop_price,  # type: ignore[arg-type]
                    cmd.expire_time, cmd.display_qty).rejected(reason)
    h.expect(events, [expected])
    assert h.open("A") == []


def test_a_stop_market_buy_by_budget_spends_it_when_triggered() -> None:
    h = Harness()
    ask = h.rest("B", "sell", 10, 100)
    events = h.apply(Place("A", "buy", "stop_market", 0, stop_price=100, quote_qty=250))
    stop = Spec(h.input_id, "A", "buy", 0, 0, "stop_market", "IOC", stop_price=100)
    h.expect(events, [stop.untriggered()])
    buyer, events = place(h, "C", "buy", "limit", 1, 100)
    taker = dataclasses.replace(stop, qty=2)  # a budget's qty is what it filled
    h.expect(events, [
        buyer.new(),
        *fill(1, ask, buyer, 1, 100, maker_cum=1, taker_cum=1),
        stop.triggered(),
        *fill(2, ask, taker, 2, 100, maker_cum=3, taker_cum=2),  # 250 pays for 2 lots
        levels(asks=[(100, 7)]),
    ])


# -- icebergs -----------------------------------------------------------------


def test_iceberg_shows_its_slice_refills_behind_the_level_and_fok_sees_the_rest() -> None:
    h = Harness()
    ice, events = place(h, "B", "sell", "limit", 10, 101, display_qty=3)
    h.expect(events, [ice.new(), levels(asks=[(101, 3)])])
    other = h.rest("C", "sell", 2, 101)
    assert h.book.depth("sell") == [(101, 5)]
    buyer, events = place(h, "A", "buy", "limit", 4, 101)
    h.expect(events, [
        buyer.new(),
        *fill(1, ice, buyer, 3, 101, maker_cum=3, taker_cum=3),  # its whole slice
        *fill(2, other, buyer, 1, 101, maker_cum=1, taker_cum=4),  # now ahead of its refill
        levels(asks=[(101, 4)]),
    ])
    assert queue(h) == [other.order_id, ice.order_id]
    too_big, events = place(h, "D", "buy", "limit", 9, 101, tif="FOK")
    h.expect(events, [too_big.new(), too_big.expired("FOK_UNFILLABLE")])
    fok, events = place(h, "D", "buy", "limit", 8, 101, tif="FOK")  # 1 shown + 7 (3 hidden)
    h.expect(events, [
        fok.new(),
        *fill(3, other, fok, 1, 101, maker_cum=2, taker_cum=1),
        *fill(4, ice, fok, 3, 101, maker_cum=6, taker_cum=4),
        *fill(5, ice, fok, 3, 101, maker_cum=9, taker_cum=7),
        *fill(6, ice, fok, 1, 101, maker_cum=10, taker_cum=8),
        levels(asks=[(101, 0)]),
    ])


def test_iceberg_taker_matches_whole_then_rests_a_full_slice() -> None:
    h = Harness()
    ask = h.rest("B", "sell", 2, 100)
    ice, events = place(h, "A", "buy", "limit", 9, 100, display_qty=4)
    h.expect(events, [
        ice.new(),
        *fill(1, ask, ice, 2, 100, maker_cum=2, taker_cum=2),
        levels(bids=[(100, 4)], asks=[(100, 0)]),  # 7 left, 4 of them shown
    ])


def test_amend_of_an_iceberg_keeps_display_qty() -> None:
    h = Harness()
    ice, _ = place(h, "B", "sell", "limit", 10, 101, display_qty=4)
    other = h.rest("C", "sell", 2, 101)
    events = h.apply(Amend("B", ice.order_id, qty=3))  # below its slice: shows 3, keeps place
    ice = dataclasses.replace(ice, qty=3)
    h.expect(events, [ice.replaced(), levels(asks=[(101, 5)])])
    assert queue(h) == [ice.order_id, other.order_id]
    events = h.apply(Amend("B", ice.order_id, qty=8))  # larger: reinserted with a full slice
    ice = dataclasses.replace(ice, qty=8)
    h.expect(events, [ice.replaced(), levels(asks=[(101, 6)])])
    assert queue(h) == [other.order_id, ice.order_id]
    events = h.apply(Amend("B", ice.order_id, price=103))
    ice = dataclasses.replace(ice, price=103)
    h.expect(events, [ice.replaced(), levels(asks=[(101, 2), (103, 4)])])
    [_, r] = take_snapshot(h.book).orders
    assert (r.order_id, r.display_qty, r.visible, r.qty) == (ice.order_id, 4, 4, 8)


def test_stp_cancels_a_whole_iceberg_maker() -> None:
    h = Harness()
    ice, _ = place(h, "A", "sell", "limit", 10, 101, display_qty=2)
    taker, events = place(h, "A", "buy", "limit", 1, 101, stp="cancel_maker")
    h.expect(events, [taker.new(), ice.canceled("STP"), levels(bids=[(101, 1)], asks=[(101, 0)])])


# -- snapshot -----------------------------------------------------------------


def test_snapshot_round_trip_with_stops_icebergs_and_gtd_continues_identically() -> None:
    h = Harness()
    setup: list[Command] = [
        Place("B", "buy", "limit", 5, 100),
        Place("H", "buy", "limit", 3, 99),
        Place("C", "sell", "limit", 10, 102, display_qty=3),
        Place("D", "sell", "limit", 1, 100),  # a trade at 100
        Place("A", "buy", "limit", 2, 98, "GTD", expire_time=1011),
        Place("A", "sell", "stop_market", 3, stop_price=99, client_order_id="sm"),
        Place("E", "buy", "take_profit_limit", 2, 102, "GTD", stop_price=99,
              expire_time=1020),
        Place("A", "buy", "stop_limit", 1, 104, stop_price=104, client_order_id="sb"),
        Place("H", "sell", "limit", 1, 104, "GTD", expire_time=1012),
        Place("F", "buy", "limit", 2, 102),  # takes 2 of the iceberg's slice of 3
    ]
    for cmd in setup:
        h.apply(cmd)
    snap = take_snapshot(h.book, h.input_id)
    assert snap.last_price == 102
    assert [(r.type, r.stop_price) for r in snap.orders if r.untriggered] == [
        ("stop_market", 99), ("take_profit_limit", 99), ("stop_limit", 104)]
    [ice] = [r for r in snap.orders if r.display_qty]
    assert (ice.visible, ice.qty - ice.cum_qty) == (1, 8)
    restored = restore_book(h.book.market, decode_snapshot(encode_snapshot(snap)))
    restored._check()
    assert take_snapshot(restored, h.input_id) == snap
    follow_up: list[tuple[str, Command]] = [
        ("1011-0", Place("G", "buy", "limit", 3, 102)),  # the GTD bid expires; ice refills
        ("1011-1", Place("G", "sell", "market", 5)),  # prints 100, 99: both stops at 99 run
        ("1011-2", Amend("A", client_order_id="sb", stop_price=103)),
        ("1012-0", Clock()),  # the GTD ask expires
        ("1013-0", CancelAll("A")),  # the stop still waiting
    ]
    kinds: list[str] = []
    for input_id, cmd in follow_up:
        want = h.book.apply(input_id, cmd)
        assert restored.apply(input_id, cmd) == want, (input_id, cmd)
        restored._check()
        kinds += [f"{e.exec_type} {e.reason or e.status}" for e in want if isinstance(e, Report)]
    assert take_snapshot(restored) == take_snapshot(h.book)
    for kind in ("expired EXPIRED", "triggered new", "expired NO_LIQUIDITY",
                 "replaced untriggered", "canceled USER_CANCEL", "trade filled"):
        assert kind in kinds, kinds
    assert kinds.count("expired EXPIRED") == 2 and kinds.count("triggered new") == 2

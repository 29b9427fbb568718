"""Unit tests of the order book: one test per matching rule, exact events.

Every command goes through :class:`Harness`, which also asserts that the
command's events carry contiguous ``seq`` numbers and the input entry's
milliseconds as ``ts``, and that ``OrderBook._check()`` holds afterwards.
Expected events are written without ``seq``/``ts`` (the harness fills them in).
"""

from __future__ import annotations

import dataclasses
import random

import msgspec
from reference_matcher import WORKLOAD_MARKET, Workload

from contract.commands import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    OrderType,
    Place,
    Side,
    StpMode,
    Tif,
)
from contract.events import (
    BookUpdate,
    CancelRejected,
    Event,
    ExecType,
    InputRejected,
    Liquidity,
    Report,
    Status,
    Trade,
    encode_events,
)
from contract.market import Market
from matching.book import OrderBook

# One tick = 1, one lot = 1: prices and quantities read as they are.
MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "1000", "1", "10000")


@dataclasses.dataclass(frozen=True)
class OrderSpec:
    """What a test knows about one order; builds its expected reports."""

    order_id: str
    account: str
    side: Side
    qty: int
    price: int
    type: OrderType = "limit"
    tif: Tif = "GTC"
    coid: str | None = None

    def report(self, exec_type: ExecType, status: Status, *, cum_qty: int = 0,
               leaves: int = 0, cum_notional: int = 0, last_qty: int = 0, last_price: int = 0,
               liquidity: Liquidity | None = None, trade_id: int | None = None,
               reason: str | None = None) -> Report:
        return Report(0, 0, self.account, self.order_id, self.coid, self.side, self.type,
                      self.tif, self.price, self.qty, exec_type, status, last_qty, last_price,
                      cum_qty, leaves, cum_notional, liquidity, trade_id, reason)

    def new(self) -> Report:
        return self.report("new", "new", leaves=self.qty)

    def rejected(self, reason: str) -> Report:
        return self.report("rejected", "rejected", reason=reason)

    def expired(self, reason: str | None, cum_qty: int = 0, cum_notional: int = 0) -> Report:
        return self.report("expired", "expired", cum_qty=cum_qty, cum_notional=cum_notional,
                           reason=reason)

    def canceled(self, reason: str = "USER_CANCEL", cum_qty: int = 0,
                 cum_notional: int = 0) -> Report:
        return self.report("canceled", "canceled", cum_qty=cum_qty, cum_notional=cum_notional,
                           reason=reason)

    def replaced(self, cum_qty: int = 0, cum_notional: int = 0) -> Report:
        return self.report("replaced", "partially_filled" if cum_qty else "new",
                           cum_qty=cum_qty, leaves=self.qty - cum_qty, cum_notional=cum_notional)

    def filled(self, last_qty: int, last_price: int, cum_qty: int, cum_notional: int,
               liquidity: Liquidity, trade_id: int) -> Report:
        return self.report("trade", "filled" if cum_qty == self.qty else "partially_filled",
                           cum_qty=cum_qty, leaves=self.qty - cum_qty,
                           cum_notional=cum_notional, last_qty=last_qty, last_price=last_price,
                           liquidity=liquidity, trade_id=trade_id)

    def amended(self, qty: int | None = None, price: int | None = None) -> OrderSpec:
        return dataclasses.replace(self, qty=self.qty if qty is None else qty,
                                   price=self.price if price is None else price)


def fill(trade_id: int, maker: OrderSpec, taker: OrderSpec, qty: int, price: int, *,
         maker_cum: int, taker_cum: int, maker_notional: int | None = None,
         taker_notional: int | None = None) -> list[Event]:
    """The three events of one fill: Trade, maker report, taker report."""
    return [
        Trade(0, 0, trade_id, price, qty, taker.side, maker.order_id, taker.order_id),
        maker.filled(qty, price, maker_cum,
                     maker_cum * price if maker_notional is None else maker_notional,
                     "maker", trade_id),
        taker.filled(qty, price, taker_cum,
                     taker_cum * price if taker_notional is None else taker_notional,
                     "taker", trade_id),
    ]


def levels(bids: list[tuple[int, int]] | None = None,
           asks: list[tuple[int, int]] | None = None) -> BookUpdate:
    return BookUpdate(0, 0, tuple(bids or ()), tuple(asks or ()))


class Harness:
    """An OrderBook fed input ids ``"<1001, 1002, ...>-0"``; checks seq, ts and ``_check``."""

    def __init__(self, market: Market = MARKET) -> None:
        self.book = OrderBook(market)
        self.ms = 1000
        self.seq = 0
        self.first_seq = 1
        self.input_id = ""

    def apply(self, cmd: Command) -> list[Event]:
        self.ms += 1
        self.input_id = f"{self.ms}-0"
        events = self.book.apply(self.input_id, cmd)
        self.book._check()
        self.first_seq = self.seq + 1
        assert [e.seq for e in events] == list(range(self.first_seq, self.seq + 1 + len(events)))
        assert all(e.ts == self.ms for e in events)
        self.seq += len(events)
        return events

    def place(self, account: str, side: Side, qty: int, price: int = 0, *,
              type: OrderType = "limit", tif: Tif = "GTC", post_only: bool = False,
              coid: str | None = None,
              stp: StpMode = "cancel_taker") -> tuple[OrderSpec, list[Event]]:
        events = self.apply(Place(account, side, type, qty, price, tif, post_only, coid, stp))
        o = OrderSpec(self.input_id, account, side, qty, price if type == "limit" else 0, type,
                      tif if type == "limit" or tif == "FOK" else "IOC", coid)
        return o, events

    def rest(self, account: str, side: Side, qty: int, price: int, *,
             post_only: bool = False, coid: str | None = None,
             stp: StpMode = "cancel_taker") -> OrderSpec:
        """Place a GTC limit order that must rest untouched (setup step)."""
        o, events = self.place(account, side, qty, price, post_only=post_only, coid=coid,
                               stp=stp)
        assert events[0] == self.stamp(o.new(), 0)
        assert len(events) == 2 and isinstance(events[1], BookUpdate)
        return o

    def stamp(self, e: Event, i: int) -> Event:
        return msgspec.structs.replace(e, seq=self.first_seq + i, ts=self.ms)

    def expect(self, events: list[Event], expected: list[Event]) -> None:
        """``events`` are exactly ``expected`` (numbered from this command's first seq)."""
        assert events == [self.stamp(e, i) for i, e in enumerate(expected)]

    def rejected_cancel(self, account: str, order_id: str | None, coid: str | None,
                        reason: str) -> CancelRejected:
        return CancelRejected(0, 0, account, order_id, coid, self.input_id, reason)

    def open(self, account: str) -> list[tuple[str, int, int, int]]:
        """``(order_id, price, qty, cum_qty)`` of the account's open orders, oldest first."""
        return [(o.order_id, o.price, o.qty, o.cum_qty) for o in self.book.open_orders(account)]


# -- resting, priority, prices ------------------------------------------------


def test_limit_gtc_order_that_does_not_cross_rests() -> None:
    h = Harness()
    b, events = h.place("B", "buy", 5, 99)
    h.expect(events, [b.new(), levels(bids=[(99, 5)])])
    s, events = h.place("S", "sell", 7, 101)
    h.expect(events, [s.new(), levels(asks=[(101, 7)])])
    assert h.book.depth("buy") == [(99, 5)] and h.book.depth("sell") == [(101, 7)]
    assert (h.book.best_bid(), h.book.best_ask()) == (99, 101)
    assert h.open("B") == [(b.order_id, 99, 5, 0)]


def test_fills_follow_price_then_time_priority_at_the_makers_prices() -> None:
    h = Harness()
    s1 = h.rest("B", "sell", 3, 101)
    s2 = h.rest("C", "sell", 2, 100)
    s3 = h.rest("D", "sell", 4, 100)
    a, events = h.place("A", "buy", 8, 101)
    h.expect(events, [
        a.new(),
        *fill(1, s2, a, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, s3, a, 4, 100, maker_cum=4, taker_cum=6),
        *fill(3, s1, a, 2, 101, maker_cum=2, taker_cum=8, taker_notional=802),
        levels(asks=[(100, 0), (101, 1)]),
    ])
    assert h.book.depth("sell") == [(101, 1)] and h.book.depth("buy") == []
    assert h.open("B") == [(s1.order_id, 101, 3, 2)]


def test_sell_taker_fills_at_the_resting_bids_price() -> None:
    h = Harness()
    b1 = h.rest("B", "buy", 5, 105)
    b2 = h.rest("C", "buy", 5, 104)
    a, events = h.place("A", "sell", 7, 100)
    h.expect(events, [
        a.new(),
        *fill(1, b1, a, 5, 105, maker_cum=5, taker_cum=5),
        *fill(2, b2, a, 2, 104, maker_cum=2, taker_cum=7, taker_notional=525 + 208),
        levels(bids=[(105, 0), (104, 3)]),
    ])


def test_gtc_remainder_rests_after_partial_fill() -> None:
    h = Harness()
    s = h.rest("B", "sell", 2, 100)
    a, events = h.place("A", "buy", 5, 100)
    h.expect(events, [
        a.new(),
        *fill(1, s, a, 2, 100, maker_cum=2, taker_cum=2),
        levels(bids=[(100, 3)], asks=[(100, 0)]),
    ])
    assert h.open("A") == [(a.order_id, 100, 5, 2)]
    assert h.book.open_orders("A")[0].leaves == 3


# -- time in force, market orders, post-only ----------------------------------


def test_ioc_fills_what_it_can_and_expires_the_rest_without_reason() -> None:
    h = Harness()
    s1 = h.rest("B", "sell", 2, 100)
    h.rest("B", "sell", 5, 101)
    a, events = h.place("A", "buy", 4, 100, tif="IOC")
    h.expect(events, [
        a.new(),
        *fill(1, s1, a, 2, 100, maker_cum=2, taker_cum=2),
        a.expired(None, cum_qty=2, cum_notional=200),
        levels(asks=[(100, 0)]),
    ])
    assert h.book.depth("buy") == [] and h.open("A") == []


def test_ioc_that_cannot_fill_expires_and_leaves_the_book_alone() -> None:
    h = Harness()
    h.rest("B", "sell", 2, 101)
    a, events = h.place("A", "buy", 4, 100, tif="IOC")
    h.expect(events, [a.new(), a.expired(None)])
    assert h.book.depth("buy") == [] and h.book.depth("sell") == [(101, 2)]


def test_fok_that_can_fill_fills_completely_across_levels() -> None:
    h = Harness()
    s1 = h.rest("B", "sell", 2, 100)
    s2 = h.rest("C", "sell", 3, 101)
    a, events = h.place("A", "buy", 5, 101, tif="FOK")
    h.expect(events, [
        a.new(),
        *fill(1, s1, a, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, s2, a, 3, 101, maker_cum=3, taker_cum=5, taker_notional=503),
        levels(asks=[(100, 0), (101, 0)]),
    ])


def test_fok_that_cannot_fill_expires_with_no_fill_and_no_side_effects() -> None:
    h = Harness()
    h.rest("B", "sell", 2, 100)
    h.rest("C", "sell", 3, 101)
    a, events = h.place("A", "buy", 6, 101, tif="FOK")
    h.expect(events, [a.new(), a.expired("FOK_UNFILLABLE")])
    # Only what is within its limit counts: 2 at 100 is not 3.
    a2, events = h.place("A", "sell", 3, 100, tif="FOK")
    h.expect(events, [a2.new(), a2.expired("FOK_UNFILLABLE")])
    a3, events = h.place("A", "buy", 3, 100, tif="FOK")
    h.expect(events, [a3.new(), a3.expired("FOK_UNFILLABLE")])
    assert h.book.depth("sell") == [(100, 2), (101, 3)] and h.book.trade_id == 0


def test_market_order_sweeps_levels_and_expires_the_remainder_no_liquidity() -> None:
    h = Harness()
    s1 = h.rest("B", "sell", 2, 100)
    s2 = h.rest("C", "sell", 1, 102)
    a, events = h.place("A", "buy", 5, type="market")
    assert (a.price, a.tif) == (0, "IOC")
    h.expect(events, [
        a.new(),
        *fill(1, s1, a, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, s2, a, 1, 102, maker_cum=1, taker_cum=3, taker_notional=302),
        a.expired("NO_LIQUIDITY", cum_qty=3, cum_notional=302),
        levels(asks=[(100, 0), (102, 0)]),
    ])


def test_market_order_on_an_empty_side_expires_no_liquidity_and_ignores_price() -> None:
    h = Harness()
    h.rest("B", "sell", 2, 100)
    a, events = h.place("A", "sell", 5, 77, type="market", tif="GTC")
    h.expect(events, [a.new(), a.expired("NO_LIQUIDITY")])
    assert isinstance(events[0], Report) and (events[0].price, events[0].tif) == (0, "IOC")


def test_market_fok_fills_completely_or_not_at_all() -> None:
    h = Harness()
    s = h.rest("B", "sell", 3, 100)
    a, events = h.place("A", "buy", 4, type="market", tif="FOK")
    h.expect(events, [a.new(), a.expired("FOK_UNFILLABLE")])
    a2, events = h.place("A", "buy", 3, type="market", tif="FOK")
    assert a2.tif == "FOK"
    h.expect(events, [a2.new(), *fill(1, s, a2, 3, 100, maker_cum=3, taker_cum=3),
                      levels(asks=[(100, 0)])])


def test_post_only_that_would_take_is_rejected_and_never_rests() -> None:
    h = Harness()
    h.rest("B", "sell", 2, 100)
    a, events = h.place("A", "buy", 3, 100, post_only=True)
    h.expect(events, [a.rejected("POST_ONLY_WOULD_TAKE")])
    assert h.book.depth("buy") == [] and h.book.depth("sell") == [(100, 2)]
    m, events = h.place("A", "buy", 3, type="market", post_only=True)
    h.expect(events, [m.rejected("POST_ONLY_WOULD_TAKE")])


def test_post_only_that_does_not_cross_rests() -> None:
    h = Harness()
    h.rest("B", "sell", 2, 100)
    a, events = h.place("A", "buy", 3, 99, post_only=True)
    h.expect(events, [a.new(), levels(bids=[(99, 3)])])


# -- self-trade prevention ----------------------------------------------------


def test_stp_cancel_taker_is_the_default_and_expires_the_taker_remainder() -> None:
    h = Harness()
    other = h.rest("B", "sell", 5, 100)
    own = h.rest("A", "sell", 5, 100)
    a, events = h.place("A", "buy", 8, 100)
    h.expect(events, [
        a.new(),
        *fill(1, other, a, 5, 100, maker_cum=5, taker_cum=5),
        a.expired("STP", cum_qty=5, cum_notional=500),
        levels(asks=[(100, 5)]),
    ])
    assert h.open("A") == [(own.order_id, 100, 5, 0)]  # the maker is untouched


def test_stp_cancel_taker_that_changes_no_level_emits_no_book_update() -> None:
    """A taker stopped at once by its own resting order changes nothing in the book."""
    h = Harness()
    own = h.rest("A", "sell", 5, 100)
    a, events = h.place("A", "buy", 5, 100)
    h.expect(events, [a.new(), a.expired("STP")])
    assert h.open("A") == [(own.order_id, 100, 5, 0)]


def test_stp_cancel_maker_cancels_own_makers_and_keeps_matching() -> None:
    h = Harness()
    own = h.rest("A", "sell", 2, 100)
    other = h.rest("B", "sell", 5, 100)
    a, events = h.place("A", "buy", 4, 100, stp="cancel_maker")
    h.expect(events, [
        a.new(),
        own.canceled("STP"),
        *fill(1, other, a, 4, 100, maker_cum=4, taker_cum=4),
        levels(asks=[(100, 1)]),
    ])
    assert h.open("A") == []


def test_stp_cancel_both_cancels_the_maker_and_expires_the_taker() -> None:
    h = Harness()
    own = h.rest("A", "sell", 2, 100)
    other = h.rest("B", "sell", 5, 100)
    a, events = h.place("A", "buy", 4, 100, stp="cancel_both")
    h.expect(events, [a.new(), own.canceled("STP"), a.expired("STP"), levels(asks=[(100, 5)])])
    assert h.open("A") == [] and h.open("B") == [(other.order_id, 100, 5, 0)]


def test_stp_none_trades_with_itself() -> None:
    h = Harness()
    own = h.rest("A", "sell", 3, 100)
    a, events = h.place("A", "buy", 3, 100, stp="none")
    h.expect(events, [a.new(), *fill(1, own, a, 3, 100, maker_cum=3, taker_cum=3),
                      levels(asks=[(100, 0)])])


def test_stp_uses_the_takers_mode_not_the_makers() -> None:
    h = Harness()
    other = h.rest("B", "sell", 1, 100)
    own = h.rest("A", "sell", 3, 100, stp="none")
    a, events = h.place("A", "buy", 3, 100)  # cancel_taker
    h.expect(events, [a.new(), *fill(1, other, a, 1, 100, maker_cum=1, taker_cum=1),
                      a.expired("STP", cum_qty=1, cum_notional=100), levels(asks=[(100, 3)])])
    own2 = h.rest("A", "buy", 2, 90, stp="cancel_both")
    a2, events = h.place("A", "sell", 2, 90, stp="none")
    h.expect(events, [a2.new(), *fill(2, own2, a2, 2, 90, maker_cum=2, taker_cum=2),
                      levels(bids=[(90, 0)])])
    assert h.open("A") == [(own.order_id, 100, 3, 0)]


def test_stp_only_applies_within_one_account() -> None:
    h = Harness()
    s = h.rest("B", "sell", 3, 100)
    a, events = h.place("A", "buy", 3, 100, stp="cancel_both")
    h.expect(events, [a.new(), *fill(1, s, a, 3, 100, maker_cum=3, taker_cum=3),
                      levels(asks=[(100, 0)])])


def test_fok_cancel_taker_counts_only_liquidity_before_its_own_order() -> None:
    h = Harness()
    other = h.rest("B", "sell", 3, 100)
    own = h.rest("A", "sell", 2, 100)
    h.rest("C", "sell", 5, 100)
    a, events = h.place("A", "buy", 4, 100, tif="FOK")
    h.expect(events, [a.new(), a.expired("FOK_UNFILLABLE")])
    assert h.book.depth("sell") == [(100, 10)]
    a2, events = h.place("A", "buy", 3, 100, tif="FOK")
    h.expect(events, [a2.new(), *fill(1, other, a2, 3, 100, maker_cum=3, taker_cum=3),
                      levels(asks=[(100, 7)])])
    assert h.open("A") == [(own.order_id, 100, 2, 0)]


def test_fok_cancel_both_unfillable_behind_own_order_has_no_side_effects() -> None:
    h = Harness()
    own = h.rest("A", "sell", 2, 100)
    h.rest("B", "sell", 5, 100)
    a, events = h.place("A", "buy", 3, 100, tif="FOK", stp="cancel_both")
    h.expect(events, [a.new(), a.expired("FOK_UNFILLABLE")])
    assert h.open("A") == [(own.order_id, 100, 2, 0)]
    assert h.book.depth("sell") == [(100, 7)]


def test_fok_cancel_maker_skips_own_orders_when_counting() -> None:
    h = Harness()
    own = h.rest("A", "sell", 2, 100)
    other = h.rest("B", "sell", 3, 100)
    # 3 fillable (own 2 skipped): an FOK for 4 is unfillable and cancels nothing.
    a, events = h.place("A", "buy", 4, 100, tif="FOK", stp="cancel_maker")
    h.expect(events, [a.new(), a.expired("FOK_UNFILLABLE")])
    assert h.open("A") == [(own.order_id, 100, 2, 0)]
    # An FOK for 3 fills, cancelling the own maker on the way.
    a2, events = h.place("A", "buy", 3, 100, tif="FOK", stp="cancel_maker")
    h.expect(events, [a2.new(), own.canceled("STP"),
                      *fill(1, other, a2, 3, 100, maker_cum=3, taker_cum=3),
                      levels(asks=[(100, 0)])])


def test_fok_stp_none_counts_own_orders() -> None:
    h = Harness()
    own = h.rest("A", "sell", 2, 100)
    other = h.rest("B", "sell", 3, 100)
    a, events = h.place("A", "buy", 5, 100, tif="FOK", stp="none")
    h.expect(events, [a.new(), *fill(1, own, a, 2, 100, maker_cum=2, taker_cum=2),
                      *fill(2, other, a, 3, 100, maker_cum=3, taker_cum=5),
                      levels(asks=[(100, 0)])])


# -- amend ----------------------------------------------------------------------


def test_amend_quantity_decrease_keeps_time_priority() -> None:
    h = Harness()
    b1 = h.rest("B", "sell", 5, 100)
    c1 = h.rest("C", "sell", 5, 100)
    events = h.apply(Amend("B", b1.order_id, qty=3))
    b1 = b1.amended(qty=3)
    h.expect(events, [b1.replaced(), levels(asks=[(100, 8)])])
    a, events = h.place("A", "buy", 4, 100)
    h.expect(events, [a.new(), *fill(1, b1, a, 3, 100, maker_cum=3, taker_cum=3),
                      *fill(2, c1, a, 1, 100, maker_cum=1, taker_cum=4),
                      levels(asks=[(100, 4)])])


def test_amend_quantity_increase_loses_time_priority() -> None:
    h = Harness()
    b1 = h.rest("B", "sell", 5, 100)
    c1 = h.rest("C", "sell", 5, 100)
    events = h.apply(Amend("B", b1.order_id, qty=7))
    b1 = b1.amended(qty=7)
    h.expect(events, [b1.replaced(), levels(asks=[(100, 12)])])
    a, events = h.place("A", "buy", 6, 100)
    h.expect(events, [a.new(), *fill(1, c1, a, 5, 100, maker_cum=5, taker_cum=5),
                      *fill(2, b1, a, 1, 100, maker_cum=1, taker_cum=6),
                      levels(asks=[(100, 6)])])


def test_amend_price_change_loses_time_priority() -> None:
    h = Harness()
    b = h.rest("B", "sell", 5, 100)
    c = h.rest("C", "sell", 5, 101)
    b_at_101 = h.apply(Amend("B", b.order_id, price=101))
    b = b.amended(price=101)
    h.expect(b_at_101, [b.replaced(), levels(asks=[(100, 0), (101, 10)])])
    a, events = h.place("A", "buy", 6, 101)
    h.expect(events, [a.new(), *fill(1, c, a, 5, 101, maker_cum=5, taker_cum=5),
                      *fill(2, b, a, 1, 101, maker_cum=1, taker_cum=6),
                      levels(asks=[(101, 4)])])


def test_amend_qty_is_the_new_total_including_the_filled_part() -> None:
    h = Harness()
    s = h.rest("B", "sell", 10, 100)
    h.place("A", "buy", 4, 100)
    events = h.apply(Amend("B", s.order_id, qty=6))
    s = s.amended(qty=6)
    h.expect(events, [s.replaced(cum_qty=4, cum_notional=400), levels(asks=[(100, 2)])])
    assert h.open("B") == [(s.order_id, 100, 6, 4)]


def test_amend_to_at_most_the_filled_quantity_is_rejected_invalid_qty() -> None:
    h = Harness()
    s = h.rest("B", "sell", 10, 100)
    h.place("A", "buy", 4, 100)
    for qty in (4, 3):
        events = h.apply(Amend("B", s.order_id, qty=qty))
        h.expect(events, [h.rejected_cancel("B", s.order_id, None, "INVALID_QTY")])
    events = h.apply(Amend("B", s.order_id, qty=1001))  # above the market's max_qty
    h.expect(events, [h.rejected_cancel("B", s.order_id, None, "INVALID_QTY")])
    events = h.apply(Amend("B", s.order_id, price=10001))
    h.expect(events, [h.rejected_cancel("B", s.order_id, None, "INVALID_PRICE")])
    events = h.apply(Amend("B", s.order_id))
    h.expect(events, [h.rejected_cancel("B", s.order_id, None, "BAD_REQUEST")])
    assert h.open("B") == [(s.order_id, 100, 10, 4)]
    assert h.book.depth("sell") == [(100, 6)]


def test_amend_through_the_spread_replaces_then_trades_as_taker() -> None:
    h = Harness()
    bid = h.rest("B", "buy", 5, 99)
    ask = h.rest("C", "sell", 3, 101)
    events = h.apply(Amend("C", ask.order_id, price=98))
    ask = ask.amended(price=98)
    h.expect(events, [ask.replaced(), *fill(1, bid, ask, 3, 99, maker_cum=3, taker_cum=3),
                      levels(bids=[(99, 2)], asks=[(101, 0)])])
    assert h.open("C") == []


def test_amended_post_only_that_would_cross_is_rejected_and_stays() -> None:
    h = Harness()
    s = h.rest("B", "sell", 5, 101, post_only=True)
    h.rest("C", "buy", 2, 100)
    events = h.apply(Amend("B", s.order_id, price=100))
    h.expect(events, [h.rejected_cancel("B", s.order_id, None, "POST_ONLY_WOULD_TAKE")])
    assert h.open("B") == [(s.order_id, 101, 5, 0)]
    events = h.apply(Amend("B", s.order_id, price=102))  # not crossing: fine
    h.expect(events, [s.amended(price=102).replaced(), levels(asks=[(101, 0), (102, 5)])])


def test_amend_by_client_order_id_keeps_order_id_and_client_order_id() -> None:
    h = Harness()
    s = h.rest("B", "sell", 5, 101, coid="x-1")
    events = h.apply(Amend("B", client_order_id="x-1", price=102, qty=6))
    s = s.amended(qty=6, price=102)
    h.expect(events, [s.replaced(), levels(asks=[(101, 0), (102, 6)])])
    events = h.apply(Cancel("B", client_order_id="x-1"))
    h.expect(events, [s.canceled(), levels(asks=[(102, 0)])])


def test_amend_or_cancel_of_orders_not_resting_is_rejected_unknown_order() -> None:
    h = Harness()
    filled = h.rest("B", "sell", 1, 100, coid="f")
    h.place("A", "buy", 1, 100)
    canceled = h.rest("B", "sell", 1, 101, coid="c")
    h.apply(Cancel("B", canceled.order_id))
    open_ = h.rest("B", "sell", 1, 102, coid="o")
    depth = h.book.depth("sell")
    cases: list[tuple[str, str | None, str | None]] = [
        ("B", "999-0", None),  # never existed
        ("B", None, "nope"),
        ("B", filled.order_id, None),  # already filled
        ("B", None, "f"),
        ("B", canceled.order_id, None),  # already canceled
        ("B", None, "c"),
        ("A", open_.order_id, None),  # another account's order
        ("A", None, "o"),  # guessed client_order_id
        ("B", open_.order_id, "c"),  # id and client id of different orders
        ("B", None, None),
    ]
    for account, order_id, coid in cases:
        events = h.apply(Cancel(account, order_id, coid))
        h.expect(events, [h.rejected_cancel(account, order_id, coid, "UNKNOWN_ORDER")])
        events = h.apply(Amend(account, order_id, coid, qty=2))
        h.expect(events, [h.rejected_cancel(account, order_id, coid, "UNKNOWN_ORDER")])
    assert h.book.depth("sell") == depth
    assert h.open("B") == [(open_.order_id, 102, 1, 0)]


# -- cancel, cancel_all ---------------------------------------------------------


def test_cancel_by_order_id_and_by_client_order_id() -> None:
    h = Harness()
    b1 = h.rest("B", "buy", 5, 99)
    b2 = h.rest("B", "buy", 2, 99, coid="mine")
    events = h.apply(Cancel("B", b1.order_id))
    h.expect(events, [b1.canceled(), levels(bids=[(99, 2)])])
    events = h.apply(Cancel("B", client_order_id="mine"))
    h.expect(events, [b2.canceled(), levels(bids=[(99, 0)])])
    assert h.book.best_bid() is None and h.open("B") == []


def test_cancel_of_a_partially_filled_order_reports_its_fills() -> None:
    h = Harness()
    s = h.rest("B", "sell", 5, 100)
    h.place("A", "buy", 2, 100)
    events = h.apply(Cancel("B", s.order_id, None))
    h.expect(events, [s.canceled(cum_qty=2, cum_notional=200), levels(asks=[(100, 0)])])


def test_cancel_all_cancels_the_accounts_orders_oldest_first_with_its_reason() -> None:
    h = Harness()
    a1 = h.rest("A", "buy", 1, 99)
    a2 = h.rest("A", "sell", 2, 105)
    a3 = h.rest("A", "buy", 3, 98)
    b1 = h.rest("B", "buy", 1, 99)
    a4 = h.rest("A", "buy", 4, 99)
    events = h.apply(CancelAll("A", reason="CANCEL_ON_DISCONNECT"))
    h.expect(events, [a1.canceled("CANCEL_ON_DISCONNECT"), a2.canceled("CANCEL_ON_DISCONNECT"),
                      a3.canceled("CANCEL_ON_DISCONNECT"), a4.canceled("CANCEL_ON_DISCONNECT"),
                      levels(bids=[(99, 1), (98, 0)], asks=[(105, 0)])])
    assert h.open("A") == [] and h.open("B") == [(b1.order_id, 99, 1, 0)]
    assert h.apply(CancelAll("A")) == []  # nothing open: nothing to say


def test_cancel_all_with_order_ids_cancels_only_those_of_the_account() -> None:
    h = Harness()
    a1 = h.rest("A", "buy", 1, 99)
    a2 = h.rest("A", "buy", 2, 98)
    a3 = h.rest("A", "buy", 3, 97)
    b1 = h.rest("B", "buy", 1, 99)
    events = h.apply(CancelAll("A", [a3.order_id, b1.order_id, "5-5", a1.order_id, a3.order_id]))
    h.expect(events, [a1.canceled(), a3.canceled(), levels(bids=[(99, 1), (97, 0)])])
    assert h.open("A") == [(a2.order_id, 98, 2, 0)]
    assert h.open("B") == [(b1.order_id, 99, 1, 0)]
    assert h.apply(CancelAll("A", [b1.order_id, "5-5"])) == []


# -- client order ids -----------------------------------------------------------


def test_client_order_id_is_unique_among_the_accounts_open_orders() -> None:
    h = Harness()
    first = h.rest("A", "sell", 5, 101, coid="x")
    dup, events = h.place("A", "buy", 5, 101, coid="x")  # would cross (STP aside): no trade
    h.expect(events, [dup.rejected("DUPLICATE_CLIENT_ORDER_ID")])
    h.rest("B", "sell", 1, 102, coid="x")  # another account may use it
    assert h.open("A") == [(first.order_id, 101, 5, 0)]
    events = h.apply(Amend("A", client_order_id="x", price=103))  # still held after amend
    h.expect(events, [first.amended(price=103).replaced(), levels(asks=[(101, 0), (103, 5)])])
    dup2, events = h.place("A", "buy", 1, 90, coid="x")
    h.expect(events, [dup2.rejected("DUPLICATE_CLIENT_ORDER_ID")])


def test_client_order_id_can_be_reused_after_cancel_or_fill() -> None:
    h = Harness()
    first = h.rest("A", "sell", 5, 101, coid="x")
    h.apply(Cancel("A", first.order_id))
    second = h.rest("A", "sell", 2, 101, coid="x")
    taker, events = h.place("B", "buy", 2, 101)
    h.expect(events, [taker.new(), *fill(1, second, taker, 2, 101, maker_cum=2, taker_cum=2),
                      levels(asks=[(101, 0)])])
    third, events = h.place("A", "buy", 1, 90, coid="x")
    h.expect(events, [third.new(), levels(bids=[(90, 1)])])
    # A taker that fills completely never holds its id.
    h.rest("B", "sell", 1, 95)
    h.place("C", "buy", 1, 95, coid="y")
    again, events = h.place("C", "buy", 1, 80, coid="y")
    h.expect(events, [again.new(), levels(bids=[(80, 1)])])


# -- validation, event shape, determinism -----------------------------------------


def test_out_of_range_qty_and_price_are_rejected() -> None:
    h = Harness()
    for qty, price, reason in ((0, 100, "INVALID_QTY"), (1001, 100, "INVALID_QTY"),
                               (1, 0, "INVALID_PRICE"), (1, 10001, "INVALID_PRICE")):
        o, events = h.place("A", "buy", qty, price)
        h.expect(events, [o.rejected(reason)])
    m, events = h.place("A", "buy", 0, type="market")
    h.expect(events, [m.rejected("INVALID_QTY")])
    assert h.book.depth("buy") == [] and h.open("A") == []


def test_ts_and_order_id_come_from_the_input_entry_id() -> None:
    book = OrderBook(MARKET)
    events = book.apply("1700000000123-7", Place("A", "buy", "limit", 1, 5))
    assert events == [
        Report(1, 1700000000123, "A", "1700000000123-7", None, "buy", "limit", "GTC", 5, 1,
               "new", "new", 0, 0, 0, 1, 0, None, None, None),
        BookUpdate(2, 1700000000123, ((5, 1),), ()),
    ]
    events = book.apply("1700000000124-0", Cancel("A", "1700000000123-7"))
    assert [e.ts for e in events] == [1700000000124, 1700000000124]


def test_trade_ids_increase_by_one_per_trade_across_commands() -> None:
    h = Harness()
    for _ in range(3):
        h.rest("B", "sell", 1, 100)
    _, first = h.place("A", "buy", 2, 100)
    _, second = h.place("A", "buy", 1, 100)
    trades = [e for e in first + second if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == [1, 2, 3]
    reports = [e for e in first + second if isinstance(e, Report) and e.exec_type == "trade"]
    assert [r.trade_id for r in reports] == [1, 1, 2, 2, 3, 3]
    assert h.book.trade_id == 3


def test_reject_input_answers_with_the_next_seq() -> None:
    h = Harness()
    h.rest("B", "sell", 1, 100)
    assert h.book.reject_input("2000-3") == [InputRejected(3, 2000, "2000-3", "BAD_REQUEST")]
    assert h.book.reject_input("2001-0", "INTERNAL") == [
        InputRejected(4, 2001, "2001-0", "INTERNAL")]
    h.seq = 4
    _, events = h.place("A", "buy", 1, 99)
    assert events[0].seq == 5


def test_same_commands_give_byte_identical_events() -> None:
    workload = Workload(random.Random(7))
    first, second = OrderBook(WORKLOAD_MARKET), OrderBook(WORKLOAD_MARKET)
    out1: list[bytes] = []
    out2: list[bytes] = []
    for _ in range(3000):
        input_id, cmd = workload.next([(o.order_id, o.account, o.client_order_id)
                                       for a in "ABCD" for o in first.open_orders(a)])
        out1.append(encode_events(first.apply(input_id, cmd)))
        out2.append(encode_events(second.apply(input_id, cmd)))
    assert out1 == out2
    assert sum(len(b) for b in out1) > 100_000


def test_depth_best_prices_and_open_orders_queries() -> None:
    h = Harness()
    for price in (95, 97, 96):
        h.rest("B", "buy", price - 90, price)
    h.rest("B", "buy", 1, 97)
    for price in (103, 101, 102):
        h.rest("C", "sell", price - 100, price)
    assert h.book.depth("buy") == [(97, 8), (96, 6), (95, 5)]
    assert h.book.depth("buy", 2) == [(97, 8), (96, 6)]
    assert h.book.depth("sell") == [(101, 1), (102, 2), (103, 3)]
    assert h.book.depth("sell", 1) == [(101, 1)]
    assert h.book.depth("sell", 10) == h.book.depth("sell")
    assert (h.book.best_bid(), h.book.best_ask()) == (97, 101)
    assert [p for _, p, _, _ in h.open("B")] == [95, 97, 96, 97]
    assert h.open("nobody") == []

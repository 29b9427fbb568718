"""One test per class of bug that order books are known to grow.

FIFO damage on cancel, lost priority of partially filled makers, commands
accepted for dead orders, phantom best prices, resting IOC residuals, limit
orders trading through their limit, amends that fill at the wrong price or
disturb their siblings, and long sweeps. Exact events via the ``test_book``
harness; ``OrderBook._check()`` runs after every command.
"""

from __future__ import annotations

import time

import pytest
from test_book import Harness, OrderSpec, fill, levels

from contract.commands import Amend, Cancel, Place, Side
from contract.events import BookUpdate, Event, Report, Trade
from contract.market import Market
from matching.book import OrderBook
from matching.snapshot import take_snapshot

OPPOSITE: dict[Side, Side] = {"buy": "sell", "sell": "buy"}


def makers_hit(events: list[Event]) -> list[str]:
    return [e.maker_order_id for e in events if isinstance(e, Trade)]


def queue(h: Harness) -> list[str]:
    """Order ids of the whole book in priority order (bids, then asks)."""
    return [r.order_id for r in take_snapshot(h.book).orders]


@pytest.mark.parametrize("victim", [0, 1, 2, 3], ids=["head", "second", "middle", "tail"])
def test_cancelling_one_order_of_a_fifo_keeps_the_others_in_order(victim: int) -> None:
    h = Harness()
    makers = [h.rest(acct, "sell", 2, 100) for acct in "BCDE"]
    events = h.apply(Cancel(makers[victim].account, makers[victim].order_id))
    h.expect(events, [makers[victim].canceled(), levels(asks=[(100, 6)])])
    survivors = [m for i, m in enumerate(makers) if i != victim]
    assert queue(h) == [m.order_id for m in survivors]
    a, events = h.place("A", "buy", 6, 100)
    h.expect(events, [
        a.new(),
        *fill(1, survivors[0], a, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, survivors[1], a, 2, 100, maker_cum=2, taker_cum=4),
        *fill(3, survivors[2], a, 2, 100, maker_cum=2, taker_cum=6),
        levels(asks=[(100, 0)]),
    ])


def test_cancelling_head_and_then_new_head_repeatedly_keeps_fifo() -> None:
    h = Harness()
    makers = [h.rest(acct, "buy", 1, 50) for acct in "BCDEFG"]
    for i in (0, 2, 1):  # head, then a middle one, then the new head
        h.apply(Cancel(makers[i].account, makers[i].order_id))
    late = h.rest("H", "buy", 1, 50)
    expected = [m.order_id for m in makers[3:]] + [late.order_id]
    assert queue(h) == expected
    _, events = h.place("A", "sell", 4, 50)
    assert makers_hit(events) == expected
    assert h.book.depth("buy") == []


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_partially_filled_maker_keeps_front_of_queue_across_aggressors(side: Side) -> None:
    h = Harness()
    first = h.rest("B", side, 10, 100)
    second = h.rest("C", side, 5, 100)
    taker_side = OPPOSITE[side]
    for n, account in enumerate("ADE", start=1):
        t, events = h.place(account, taker_side, 3, 100)
        h.expect(events, [t.new(), *fill(n, first, t, 3, 100, maker_cum=3 * n, taker_cum=3),
                          levels(**{("bids" if side == "buy" else "asks"): [(100, 15 - 3 * n)]})])
    assert queue(h) == [first.order_id, second.order_id]
    t, events = h.place("F", taker_side, 3, 100)
    h.expect(events, [t.new(), *fill(4, first, t, 1, 100, maker_cum=10, taker_cum=1),
                      *fill(5, second, t, 2, 100, maker_cum=2, taker_cum=3),
                      levels(**{("bids" if side == "buy" else "asks"): [(100, 3)]})])


def test_cancel_and_amend_after_a_full_fill_are_rejected() -> None:
    h = Harness()
    maker = h.rest("B", "sell", 5, 100, coid="m")
    taker, _ = h.place("A", "buy", 5, 100, coid="t")
    ioc, _ = h.place("A", "buy", 5, 90, tif="IOC", coid="i")  # expired, never rested
    for account, order_id, coid in (("B", maker.order_id, None), ("B", None, "m"),
                                    ("A", taker.order_id, None), ("A", None, "t"),
                                    ("A", ioc.order_id, None), ("A", None, "i")):
        events = h.apply(Cancel(account, order_id, coid))
        h.expect(events, [h.rejected_cancel(account, order_id, coid, "UNKNOWN_ORDER")])
        events = h.apply(Amend(account, order_id, coid, qty=9, price=101))
        h.expect(events, [h.rejected_cancel(account, order_id, coid, "UNKNOWN_ORDER")])
    assert h.book.depth("buy") == [] and h.book.depth("sell") == []


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_cancelling_the_best_level_leaves_no_phantom_best_price(side: Side) -> None:
    h = Harness()
    sign = 1 if side == "buy" else -1
    best, next_ = 100, 100 - sign  # bids: 100 then 99; asks: 100 then 101
    top = [h.rest("B", side, 1, best), h.rest("C", side, 2, best)]
    behind = h.rest("D", side, 3, next_)
    key = "bids" if side == "buy" else "asks"
    for i, o in enumerate(top):
        events = h.apply(Cancel(o.account, o.order_id))
        h.expect(events, [o.canceled(), levels(**{key: [(best, 2 if i == 0 else 0)]})])
    best_now = h.book.best_bid() if side == "buy" else h.book.best_ask()
    assert best_now == next_
    assert h.book.depth(side) == [(next_, 3)] and h.book.depth(side, 1) == [(next_, 3)]
    # An order at the old best price rests instead of matching a ghost.
    probe, events = h.place("A", OPPOSITE[side], 1, best)
    h.expect(events, [probe.new(), levels(**{("asks" if side == "buy" else "bids"): [(best, 1)]})])
    h.apply(Cancel("A", probe.order_id))
    # Emptying the last level leaves the side empty.
    h.apply(Cancel("D", behind.order_id))
    assert h.book.depth(side) == []
    assert (h.book.best_bid() if side == "buy" else h.book.best_ask()) is None


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_best_level_emptied_by_trades_moves_best_to_the_next_level(side: Side) -> None:
    h = Harness()
    sign = 1 if side == "buy" else -1
    h.rest("B", side, 2, 100)
    h.rest("C", side, 3, 100 - sign)
    h.place("A", OPPOSITE[side], 2, 100)
    assert (h.book.best_bid() if side == "buy" else h.book.best_ask()) == 100 - sign
    assert h.book.depth(side) == [(100 - sign, 3)]


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_ioc_residual_never_rests(side: Side) -> None:
    h = Harness()
    maker = h.rest("B", OPPOSITE[side], 2, 100)
    sign = 1 if side == "buy" else -1
    ioc, events = h.place("A", side, 5, 100 + sign, tif="IOC")
    key = "asks" if side == "buy" else "bids"
    h.expect(events, [ioc.new(), *fill(1, maker, ioc, 2, 100, maker_cum=2, taker_cum=2),
                      ioc.expired(None, cum_qty=2, cum_notional=200), levels(**{key: [(100, 0)]})])
    assert h.book.depth("buy") == [] and h.book.depth("sell") == [] and h.open("A") == []
    probe, events = h.place("C", OPPOSITE[side], 1, 100 + sign)  # nothing to hit
    h.expect(events, [probe.new(), levels(**{key: [(100 + sign, 1)]})])


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_marketable_limit_stops_at_its_limit_and_rests_there(side: Side) -> None:
    h = Harness()
    sign = 1 if side == "buy" else -1  # how the taker's limit moves to be more aggressive
    makers = [h.rest("B", OPPOSITE[side], 2, 100 + sign * i) for i in range(3)]
    taker, events = h.place("A", side, 5, 100 + sign)
    key, own_key = ("asks", "bids") if side == "buy" else ("bids", "asks")
    h.expect(events, [
        taker.new(),
        *fill(1, makers[0], taker, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, makers[1], taker, 2, 100 + sign, maker_cum=2, taker_cum=4,
              taker_notional=200 + 2 * (100 + sign)),
        levels(**{own_key: [(100 + sign, 1)], key: [(100, 0), (100 + sign, 0)]}),
    ])
    assert h.open("A") == [(taker.order_id, 100 + sign, 5, 4)]
    assert h.book.depth(side) == [(100 + sign, 1)]
    assert h.book.depth(OPPOSITE[side]) == [(100 + 2 * sign, 2)]


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_amend_repricing_through_the_spread_fills_at_the_makers_prices(side: Side) -> None:
    h = Harness()
    sign = 1 if side == "buy" else -1
    # Opposite side at 100 and 101 (buy) / 100 and 99 (sell); ours far away at 95 / 105.
    m1 = h.rest("C", OPPOSITE[side], 2, 100)
    m2 = h.rest("D", OPPOSITE[side], 2, 100 + sign)
    ours = h.rest("B", side, 5, 100 - 5 * sign)
    events = h.apply(Amend("B", ours.order_id, price=100 + 3 * sign))
    ours = ours.amended(price=100 + 3 * sign)
    key, own_key = ("asks", "bids") if side == "buy" else ("bids", "asks")
    h.expect(events, [
        ours.replaced(),
        *fill(1, m1, ours, 2, 100, maker_cum=2, taker_cum=2),
        *fill(2, m2, ours, 2, 100 + sign, maker_cum=2, taker_cum=4,
              taker_notional=200 + 2 * (100 + sign)),
        levels(**{own_key: [(100 + 3 * sign, 1), (100 - 5 * sign, 0)],
                  key: [(100, 0), (100 + sign, 0)]}),
    ])
    assert h.open("B") == [(ours.order_id, 100 + 3 * sign, 5, 4)]
    trade_prices = [e.price for e in events if isinstance(e, Trade)]
    assert trade_prices == [100, 100 + sign]


def _two_siblings(h: Harness) -> tuple[OrderSpec, OrderSpec]:
    first = h.rest("B", "buy", 4, 100)
    second = h.rest("C", "buy", 4, 100)
    return first, second


def test_amend_qty_down_of_one_sibling_keeps_both_in_place() -> None:
    h = Harness()
    first, second = _two_siblings(h)
    events = h.apply(Amend("B", first.order_id, qty=2))
    h.expect(events, [first.amended(qty=2).replaced(), levels(bids=[(100, 6)])])
    assert queue(h) == [first.order_id, second.order_id]
    events = h.apply(Amend("C", second.order_id, qty=1))
    h.expect(events, [second.amended(qty=1).replaced(), levels(bids=[(100, 3)])])
    assert queue(h) == [first.order_id, second.order_id]
    _, events = h.place("A", "sell", 3, 100)
    assert makers_hit(events) == [first.order_id, second.order_id]


@pytest.mark.parametrize("change", ["qty_up", "price_away_and_back"])
def test_amend_losing_priority_moves_only_the_amended_sibling(change: str) -> None:
    h = Harness()
    first, second = _two_siblings(h)
    third = h.rest("D", "buy", 1, 99)
    if change == "qty_up":
        h.apply(Amend("B", first.order_id, qty=5))
        first = first.amended(qty=5)
    else:
        h.apply(Amend("B", first.order_id, price=99))
        assert queue(h) == [second.order_id, third.order_id, first.order_id]
        h.apply(Amend("B", first.order_id, price=100))
    assert queue(h) == [second.order_id, first.order_id, third.order_id]
    assert h.book.depth("buy") == [(100, first.qty + 4), (99, 1)]
    taker, events = h.place("A", "sell", 5, 100)
    h.expect(events, [taker.new(), *fill(1, second, taker, 4, 100, maker_cum=4, taker_cum=4),
                      *fill(2, first, taker, 1, 100, maker_cum=1, taker_cum=5),
                      levels(bids=[(100, first.qty - 1)])])


def test_amend_moving_the_head_to_another_level_leaves_sibling_as_head() -> None:
    h = Harness()
    first, second = _two_siblings(h)
    events = h.apply(Amend("B", first.order_id, price=98))
    h.expect(events, [first.amended(price=98).replaced(), levels(bids=[(100, 4), (98, 4)])])
    assert h.book.best_bid() == 100 and h.book.depth("buy") == [(100, 4), (98, 4)]
    _, events = h.place("A", "sell", 1, 100)
    assert makers_hit(events) == [second.order_id]


def test_five_thousand_fill_sweep_at_one_price() -> None:
    market = Market("BIG-USD", "BIG", "USD", "1", "1", "1", "100000", "1", "10000")
    book = OrderBook(market)
    n = 5000
    for i in range(n):
        book.apply(f"{10_000 + i}-0", Place(f"M{i % 10}", "sell", "limit", 1 + i % 3, 100))
    book._check()
    total = sum(1 + i % 3 for i in range(n))
    assert book.depth("sell") == [(100, total)]
    seq0 = book.seq
    started = time.perf_counter()
    events = book.apply("20000-0", Place("T", "buy", "limit", total, 100))
    elapsed = time.perf_counter() - started
    book._check()
    print(f"5,000-fill sweep: {elapsed * 1000:.1f} ms")
    assert len(events) == 1 + 3 * n + 1
    assert [e.seq for e in events] == list(range(seq0 + 1, seq0 + len(events) + 1))
    trades = [e for e in events if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == list(range(1, n + 1))
    assert [t.maker_order_id for t in trades] == [f"{10_000 + i}-0" for i in range(n)]
    assert all(t.price == 100 and t.taker_side == "buy" for t in trades)
    reports = [e for e in events if isinstance(e, Report)]
    makers = reports[1::2]
    takers = reports[2::2]
    assert len(makers) == len(takers) == n
    assert all(m.status == "filled" and m.leaves_qty == 0 and m.liquidity == "maker"
               and m.cum_qty == m.qty == m.last_qty for m in makers)
    cum = 0
    for i, t in enumerate(takers):
        cum += 1 + i % 3
        assert (t.cum_qty, t.leaves_qty, t.cum_notional, t.trade_id) == \
            (cum, total - cum, cum * 100, i + 1)
    assert takers[-1].status == "filled" and all(t.status == "partially_filled"
                                                 for t in takers[:-1])
    assert events[-1] == BookUpdate(seq0 + len(events), 20000, (), ((100, 0),))
    assert book.best_ask() is None and book.depth("sell") == [] and book.depth("buy") == []
    assert book.trade_id == n and book.open_orders("T") == []

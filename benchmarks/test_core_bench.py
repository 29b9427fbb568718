"""pytest-benchmark micro-benchmarks of the matching core (opt-in: not in testpaths).

Run: ``make bench`` or ``.venv/bin/pytest benchmarks/ --benchmark-only``.
Each benchmark builds its book outside the timed call where it can and checks
the book's final state after timing, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.flow import entry_ids, realistic_flow
from contract.commands import Amend, Cancel, Command, OrderCommand, Place, Side
from contract.events import Report, Trade
from contract.market import DEFAULT_MARKETS
from matching.book import OrderBook

MARKET = DEFAULT_MARKETS[0]
MID = 5_000_000
N = 1_000


def _resting_book(n_levels: int, per_level: int, side: Side = "sell") -> tuple[OrderBook, int]:
    book = OrderBook(MARKET)
    ids = entry_ids(n_levels * per_level, start_ms=1_000)
    k = 0
    for lvl in range(n_levels):
        price = MID + 1 + lvl if side == "sell" else MID - 1 - lvl
        for _ in range(per_level):
            book.apply(ids[k], Place("maker", side, "limit", 10, price))
            k += 1
    return book, k


def _apply_all(book: OrderBook, cmds: Sequence[tuple[str, Command]]) -> OrderBook:
    """Apply ``cmds`` in order (the timed loop of the multi-command benchmarks)."""
    apply = book.apply
    for input_id, cmd in cmds:
        apply(input_id, cmd)
    return book


def test_place_resting(benchmark: Any) -> None:
    """N passive limit orders spread over 50 levels into an empty book."""
    ids = entry_ids(N, start_ms=2_000)
    cmds = [Place(f"a{i % 4}", "buy", "limit", 10, MID - 1 - i % 50) for i in range(N)]

    def setup() -> tuple[tuple[OrderBook], dict[str, Any]]:
        return (OrderBook(MARKET),), {}

    def run(book: OrderBook) -> OrderBook:
        apply = book.apply
        for i in range(N):
            apply(ids[i], cmds[i])
        return book

    book = benchmark.pedantic(run, setup=setup, rounds=50)
    book._check()
    assert len(book.orders) == N and len(book.bids) == 50


def test_place_sweep_multi_level(benchmark: Any) -> None:
    """One market order sweeping 20 levels of 5 makers each (100 fills)."""
    taker = Place("taker", "buy", "market", 10 * 100)

    def setup() -> tuple[tuple[OrderBook], dict[str, Any]]:
        book, _ = _resting_book(20, 5)
        return (book,), {}

    def run(book: OrderBook) -> list[Any]:
        return book.apply("9000000-0", taker)

    events = benchmark.pedantic(run, setup=setup, rounds=200)
    trades = [e for e in events if type(e) is Trade]
    assert len(trades) == 100 and trades[-1].price == MID + 20
    assert isinstance(events[-2], Report) and events[-2].status == "filled"


def test_cancel(benchmark: Any) -> None:
    """Cancel N resting orders (mixed positions in their FIFOs)."""

    def setup() -> tuple[tuple[OrderBook, list[tuple[str, Cancel]]], dict[str, Any]]:
        book, k = _resting_book(50, N // 50)
        ids = list(book.orders)
        order = ids[::2] + ids[1::2]
        cancel_ids = entry_ids(len(order), start_ms=5_000)
        return (book, [(cancel_ids[i], Cancel("maker", order_id=o))
                       for i, o in enumerate(order)]), {}

    book = benchmark.pedantic(_apply_all, setup=setup, rounds=50)
    book._check()
    assert not book.orders and not book.asks


def test_amend(benchmark: Any) -> None:
    """Amend N resting orders: half keep priority (qty down), half reprice."""

    def setup() -> tuple[tuple[OrderBook, list[tuple[str, Amend]]], dict[str, Any]]:
        book, k = _resting_book(50, N // 50)
        amend_ids = entry_ids(len(book.orders), start_ms=5_000)
        cmds = []
        for i, (oid, o) in enumerate(list(book.orders.items())):
            cmd = (Amend("maker", order_id=oid, qty=5) if i % 2
                   else Amend("maker", order_id=oid, price=o.price + 100))
            cmds.append((amend_ids[i], cmd))
        return (book, cmds), {}

    book = benchmark.pedantic(_apply_all, setup=setup, rounds=50)
    book._check()
    assert len(book.orders) == N
    assert sum(lvl.total for lvl in book.asks.values()) == N // 2 * 10 + N // 2 * 5


def test_realistic_flow(benchmark: Any) -> None:
    """The ``streamex bench core`` flow, 20,000 messages per round."""
    flow = realistic_flow(MARKET, 20_000, seed=7)

    def setup() -> tuple[tuple[OrderBook, list[tuple[str, OrderCommand]]], dict[str, Any]]:
        return (OrderBook(MARKET), flow), {}

    book = benchmark.pedantic(_apply_all, setup=setup, rounds=20)
    book._check()
    reference = _apply_all(OrderBook(MARKET), flow)
    assert book.seq == reference.seq and book.depth("buy") == reference.depth("buy")

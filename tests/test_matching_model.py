"""Differential tests: the engine's book against the simple reference matcher.

Every command goes to both; the full event lists must be equal (and encode to
the same bytes), the books must agree on depth, open orders per account and
the exact queue order, and ``OrderBook._check()`` must pass after each one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from reference_matcher import (
    ACCOUNTS,
    BUY_PRICES,
    CLIENT_IDS,
    PRICES,
    QTYS,
    SELL_PRICES,
    STP_MODES,
    WORKLOAD_MARKET,
    ReferenceMatcher,
    Workload,
)

from contract.commands import Amend, Cancel, CancelAll, Command, Place, Side, StpMode, Tif
from contract.events import Event, Report, Trade, decode_events, encode_events
from matching.book import OrderBook
from matching.snapshot import take_snapshot

MARKET = WORKLOAD_MARKET


def assert_same_state(book: OrderBook, ref: ReferenceMatcher) -> None:
    """Depth, best prices, open orders per account, queue order and counters agree."""
    book._check()
    assert book.depth("buy") == ref.depth("buy")
    assert book.depth("sell") == ref.depth("sell")
    bids, asks = ref.book()
    assert book.best_bid() == (bids[0][0] if bids else None)
    assert book.best_ask() == (asks[0][0] if asks else None)
    for account in ACCOUNTS:
        got = [(o.order_id, o.client_order_id, o.side, o.price, o.qty, o.cum_qty,
                o.cum_notional) for o in book.open_orders(account)]
        assert got == ref.open_orders(account), account
    queue = [(r.order_id, r.account, r.client_order_id, r.side, r.price, r.qty, r.cum_qty,
              r.cum_notional, r.post_only, r.stp) for r in take_snapshot(book).orders]
    assert queue == ref.queue()
    assert (book.seq, book.trade_id) == (ref.seq, ref.trade_id)


class EventAudit:
    """Checks the report invariants on their own, independently of the reference."""

    def __init__(self) -> None:
        self.seq = 0
        self.trade_id = 0
        self.fills: dict[str, tuple[int, int]] = {}  # order_id -> (cum_qty, cum_notional)

    def check(self, input_id: str, events: Iterable[Event]) -> None:
        ts = int(input_id.split("-")[0])
        for e in events:
            assert e.seq == self.seq + 1, "seq not contiguous"
            self.seq = e.seq
            assert e.ts == ts
            if isinstance(e, Trade):
                assert e.trade_id == self.trade_id + 1, "trade ids not consecutive"
                self.trade_id = e.trade_id
            if not isinstance(e, Report):
                continue
            if e.status in ("new", "partially_filled"):
                assert e.qty == e.cum_qty + e.leaves_qty and e.leaves_qty > 0
            else:
                assert e.leaves_qty == 0
            cum_qty, notional = self.fills.get(e.order_id, (0, 0))
            if e.exec_type == "trade":
                assert e.liquidity in ("maker", "taker") and e.trade_id == self.trade_id
                if e.liquidity == "maker":
                    assert e.last_price == e.price, "fill not at the maker's price"
                elif e.type == "limit":
                    assert (e.last_price <= e.price if e.side == "buy"
                            else e.last_price >= e.price), "taker filled through its limit"
                cum_qty, notional = cum_qty + e.last_qty, notional + e.last_qty * e.last_price
                self.fills[e.order_id] = (cum_qty, notional)
            else:
                assert (e.liquidity, e.trade_id, e.last_qty, e.last_price) == (None, None, 0, 0)
            assert (e.cum_qty, e.cum_notional) == (cum_qty, notional)


class MatchingModel(RuleBasedStateMachine):
    """Random commands from 4 accounts in a 7-tick band, checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook(MARKET)
        self.ref = ReferenceMatcher(MARKET)
        self.audit = EventAudit()
        self.ms = 1_700_000_000_000
        self.n = 0
        self.issued: list[tuple[str, str, str | None]] = []

    def run(self, cmd: Command, same_ms: bool) -> None:
        if same_ms:
            self.n += 1
        else:
            self.ms += 1
            self.n = 0
        input_id = f"{self.ms}-{self.n}"
        want = self.ref.apply(input_id, cmd)
        got = self.book.apply(input_id, cmd)
        assert got == want
        encoded = encode_events(got)
        assert encoded == encode_events(want)
        assert decode_events(encoded) == got
        self.audit.check(input_id, got)
        if isinstance(cmd, Place):
            self.issued.append((input_id, cmd.account, cmd.client_order_id))

    def target(self, data: st.DataObject) -> tuple[str, str | None, str | None]:
        """``(account, order_id, client_order_id)`` of a cancel/amend: mostly a live order."""
        open_orders = [(o.order_id, o.account, o.client_order_id) for o in self.ref.resting]
        pool = data.draw(st.sampled_from(["open", "open", "open", "issued", "unknown"]))
        if pool == "open" and open_orders:
            order_id, owner, coid = data.draw(st.sampled_from(open_orders))
        elif pool != "unknown" and self.issued:
            order_id, owner, coid = data.draw(st.sampled_from(self.issued))
        else:
            order_id, owner, coid = "1-1", data.draw(st.sampled_from(ACCOUNTS)), None
        account = data.draw(st.sampled_from((owner,) * 9 + ACCOUNTS))
        if coid is None:
            coid = data.draw(st.sampled_from(CLIENT_IDS[3:]))
        how = data.draw(st.sampled_from(["order_id"] * 4 + ["client_order_id", "both"]))
        if how == "order_id":
            return account, order_id, None
        if how == "client_order_id":
            return account, None, coid
        return account, order_id, coid

    @invariant()
    def books_agree(self) -> None:
        assert_same_state(self.book, self.ref)

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          market_order=st.sampled_from((False,) * 7 + (True,)), qty=st.sampled_from(QTYS),
          data=st.data(), tif=st.sampled_from(("GTC", "GTC", "IOC", "FOK")),
          post_only=st.sampled_from((False,) * 6 + (True,)),
          coid=st.sampled_from(CLIENT_IDS), stp=st.sampled_from(STP_MODES),
          same_ms=st.booleans())
    def place(self, account: str, side: Side, market_order: bool, qty: int,
              data: st.DataObject, tif: Tif, post_only: bool, coid: str | None, stp: StpMode,
              same_ms: bool) -> None:
        price = 0 if market_order else data.draw(
            st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        self.run(Place(account, side, "market" if market_order else "limit", qty, price, tif,
                       post_only, coid, stp), same_ms)

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          qty=st.sampled_from(QTYS), data=st.data(), coid=st.sampled_from(CLIENT_IDS),
          stp=st.sampled_from(STP_MODES), same_ms=st.booleans())
    def place_gtc(self, account: str, side: Side, qty: int, data: st.DataObject,
                  coid: str | None, stp: StpMode, same_ms: bool) -> None:
        """GTC limit orders, the ones that build the book up (placed as often as the rest)."""
        price = data.draw(st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        self.run(Place(account, side, "limit", qty, price, "GTC", False, coid, stp), same_ms)

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), same_ms=st.booleans())
    def cancel(self, data: st.DataObject, same_ms: bool) -> None:
        self.run(Cancel(*self.target(data)), same_ms)

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), qty=st.sampled_from((None, *QTYS)),
          price=st.sampled_from((None,) * 15 + PRICES), same_ms=st.booleans())
    def amend(self, data: st.DataObject, qty: int | None, price: int | None,
              same_ms: bool) -> None:
        account, order_id, coid = self.target(data)
        self.run(Amend(account, order_id, coid, qty, price), same_ms)

    @precondition(lambda self: self.issued)
    @rule(account=st.sampled_from(ACCOUNTS), data=st.data(),
          reason=st.sampled_from(("USER_CANCEL", "CANCEL_ON_DISCONNECT")), same_ms=st.booleans())
    def cancel_all(self, account: str, data: st.DataObject, reason: str, same_ms: bool) -> None:
        ids = [i for i, _, _ in self.issued] + ["1-1"]
        order_ids = data.draw(st.none() | st.lists(st.sampled_from(ids), max_size=4))
        self.run(CancelAll(account, order_ids, reason), same_ms)


MatchingModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMatchingModel = MatchingModel.TestCase


def test_seeded_random_run_matches_reference() -> None:
    """20,000 seeded random commands: same events and same book after each one."""
    workload = Workload(random.Random(20240917))
    book = OrderBook(MARKET)
    ref = ReferenceMatcher(MARKET)
    audit = EventAudit()
    kinds: dict[str, int] = {}
    for _ in range(20_000):
        input_id, cmd = workload.next(
            [(o.order_id, o.account, o.client_order_id) for o in ref.resting])
        want = ref.apply(input_id, cmd)
        got = book.apply(input_id, cmd)
        assert got == want, (input_id, cmd)
        audit.check(input_id, got)
        assert_same_state(book, ref)
        for e in got:
            key = e.exec_type if isinstance(e, Report) else type(e).__name__
            kinds[key] = kinds.get(key, 0) + 1
    # The workload really exercised every outcome.
    for kind in ("new", "trade", "canceled", "expired", "rejected", "replaced", "Trade",
                 "CancelRejected", "BookUpdate"):
        assert kinds.get(kind, 0) > 100, (kind, kinds)

"""Property tests: the risk core against the simple reference ledger, with a real market loop.

A flow of transfers (with repeated refs), places (limit buy and sell, market
sell, market buy by budget), cancels, amends and cancel_alls goes through
``ledger.core.Ledger`` and :class:`ReferenceLedger`; what the ledger forwards
is applied by a market (the reference matcher, or the real
``matching.book.OrderBook``, both charging fees) *whenever the test decides*,
and the market's reports come back as ``Settle`` commands later still, so
fills, cancels and amends race exactly as they do between processes. After
every step: the same answers, the same balances, ``_check()``, no negative
balance, no order both refused for funds and filled, and per asset the sum
of balances equals deposits minus withdrawals. When everything is delivered
and settled, the open holds are exactly what the resting orders may still
cost. A restart (snapshot, encode, restore) changes nothing that follows.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from reference_ledger import ReferenceLedger, fee_of
from reference_matcher import ReferenceMatcher

from contract.commands import Amend, Cancel, CancelAll, Command, Place, Side, decode_command
from contract.events import CancelRejected, Event, Report
from contract.market import Market
from contract.risk import (
    Deposit,
    MarketAnswer,
    RiskCommand,
    RiskEvent,
    Settle,
    ToMarket,
    Transfer,
    Withdraw,
    decode_risk_snapshot,
    encode_risk_command,
    encode_risk_snapshot,
)
from contract.streams import FORWARD_ID_FIELD, IN_FIELD
from ledger.core import Ledger
from ledger.snapshot import restore_ledger, take_risk_snapshot
from matching.book import OrderBook

FEE_MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104",
                    maker_fee="0.001", taker_fee="0.003")
ACCOUNTS = ("A", "B", "C")
CLIENT_IDS = (None, None, None, "c1", "c2")
BUY_PRICES = (98, 99, 100, 101, 102)
SELL_PRICES = (100, 101, 102, 103, 104)
QTYS = (1, 2, 3, 5, 8)


class LedgerModel(RuleBasedStateMachine):
    market: Market = FEE_MARKET
    real_book = False

    def __init__(self) -> None:
        super().__init__()
        m = self.market
        self.ledger = Ledger(0, {m.symbol: m})
        self.twin: Ledger | None = None  # a never-restarted copy once a restart happened
        self.ref = ReferenceLedger(m)
        self.apply_market: Callable[[str, Command], list[Event]]
        if self.real_book:
            self.book = OrderBook(m)
            self.apply_market = self.book.apply
        else:
            self.matcher = ReferenceMatcher(m)
            self.apply_market = self.matcher.apply
        self.ms = 1_700_000_000_000
        self.to_market: list[tuple[str, Command]] = []  # forwarded, not yet applied
        self.to_settle: list[list[Report | CancelRejected]] = []  # applied, not yet settled
        self.out = 0
        self.issued: list[tuple[str, str, str | None]] = []
        self.net: dict[str, int] = {}
        self.refused: set[str] = set()
        self.refs_used: list[str] = []
        self.filled: set[str] = set()

    # -- plumbing -----------------------------------------------------------------------

    def run(self, cmd: RiskCommand) -> list[RiskEvent]:
        self.ms += 1
        entry = [f"{self.ms}-0".encode(), [IN_FIELD, encode_risk_command(cmd)]]
        events: list[RiskEvent] = []
        self.ledger.apply_entries([entry], events)
        outbox = self.ledger.take_outbox()
        if self.twin is not None:
            twin_events: list[RiskEvent] = []
            self.twin.apply_entries([entry], twin_events)
            assert twin_events == events, "restored ledger diverged"
            assert self.twin.take_outbox() == outbox
        for _, fields in outbox:
            assert fields[0] == IN_FIELD and fields[4] == FORWARD_ID_FIELD
            self.to_market.append((fields[5].decode(), decode_command(fields[1])))
        return events

    def answer(self, events: list[RiskEvent]) -> str:
        """What the ledger did with a ToMarket: ``forwarded`` or the refusal's reason."""
        answers = [e for e in events if isinstance(e, MarketAnswer)]
        if not answers:
            return "forwarded"
        assert len(answers) == 1
        return answers[0].event.reason or ""

    def to(self, cmd: Command) -> str:
        return self.answer(self.run(ToMarket(self.market.symbol, cmd)))

    # -- rules --------------------------------------------------------------------------

    @initialize(usd=st.lists(st.integers(0, 6000), min_size=3, max_size=3),
                tst=st.lists(st.integers(0, 60), min_size=3, max_size=3))
    def fund(self, usd: list[int], tst: list[int]) -> None:
        """Every account starts with some of both assets (0 now and then)."""
        for account, u, t in zip(ACCOUNTS, usd, tst, strict=True):
            for asset, amount in (("USD", u), ("TST", t)):
                ref = f"init:{account}:{asset}"
                self.refs_used.append(ref)
                assert self.ref.transfer(True, account, asset, amount, ref) == (
                    "applied" if amount > 0 else "rejected BAD_REQUEST")
                self.run(Deposit(account, asset, amount, ref))
                if amount > 0:
                    self.net[asset] = self.net.get(asset, 0) + amount

    @rule(deposit=st.sampled_from((True, True, False)), account=st.sampled_from(ACCOUNTS),
          asset=st.sampled_from(("USD", "TST")), amount=st.integers(-1, 3000),
          again=st.sampled_from((False, False, False, True)), data=st.data())
    def transfer(self, deposit: bool, account: str, asset: str, amount: int, again: bool,
                 data: st.DataObject) -> None:
        """A new ref mostly; now and then one already used (applied or not)."""
        if again and self.refs_used:
            ref = data.draw(st.sampled_from(self.refs_used))
        else:
            ref = f"ref{len(self.refs_used)}"
            self.refs_used.append(ref)
        if asset == "TST":
            amount //= 40
        cmd = (Deposit if deposit else Withdraw)(account, asset, amount, ref)
        [t, *rest] = self.run(cmd)
        assert isinstance(t, Transfer)
        got = t.status if t.reason is None else f"{t.status} {t.reason}"
        want = self.ref.transfer(deposit, account, asset, amount, ref)
        assert got == want
        event(f"transfer {got}")
        if got == "applied":
            self.net[asset] = self.net.get(asset, 0) + (amount if deposit else -amount)
            assert len(rest) == 1
        else:
            assert rest == []

    def _place(self, cmd: Place) -> None:
        order_id = f"{self.ms + 1}-0"
        got = self.to(cmd)
        assert got == self.ref.place(order_id, cmd)
        event(f"place {cmd.type} {cmd.side} {got}")
        if got == "INSUFFICIENT_FUNDS":
            self.refused.add(order_id)
        else:
            self.issued.append((order_id, cmd.account, cmd.client_order_id))

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          data=st.data(), qty=st.sampled_from(QTYS), tif=st.sampled_from(("GTC", "GTC", "IOC")),
          coid=st.sampled_from(CLIENT_IDS), post_only=st.sampled_from((False,) * 5 + (True,)))
    def place_limit(self, account: str, side: Side, data: st.DataObject, qty: int, tif: str,
                    coid: str | None, post_only: bool) -> None:
        price = data.draw(st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        self._place(Place(account, side, "limit", qty, price, tif, post_only,  # type: ignore[arg-type]
                          coid))

    @rule(account=st.sampled_from(ACCOUNTS), qty=st.sampled_from(QTYS))
    def place_market_sell(self, account: str, qty: int) -> None:
        self._place(Place(account, "sell", "market", qty))

    @rule(account=st.sampled_from(ACCOUNTS), budget=st.integers(1, 1500))
    def place_market_buy(self, account: str, budget: int) -> None:
        self._place(Place(account, "buy", "market", 0, quote_qty=budget))

    def _target(self, data: st.DataObject) -> tuple[str, str | None, str | None]:
        order_id, account, coid = data.draw(st.sampled_from(self.issued))
        how = data.draw(st.sampled_from(("id", "id", "coid", "both")))
        if how == "id" or coid is None:
            return account, order_id, None
        return account, (None if how == "coid" else order_id), coid

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        assert self.to(Cancel(*self._target(data))) == "forwarded"

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), qty=st.sampled_from((None, *QTYS, 13, 21)),
          price=st.sampled_from((None, None, *BUY_PRICES, *SELL_PRICES)))
    def amend(self, data: st.DataObject, qty: int | None, price: int | None) -> None:
        cmd = Amend(*self._target(data), qty, price)
        request_id = f"{self.ms + 1}-0"
        held = {k: v.hold for k, v in self.ledger.orders.items()}
        got = self.to(cmd)
        assert got == self.ref.amend(request_id, cmd)
        grew = any(o.hold > held[k] for k, o in self.ledger.orders.items())
        event(f"amend {got}{' holding more' if grew else ''}"
              f"{' pending' if request_id in self.ledger.amends else ''}")

    @rule(account=st.sampled_from(ACCOUNTS))
    def cancel_all(self, account: str) -> None:
        assert self.to(CancelAll(account)) == "forwarded"

    @precondition(lambda self: self.to_market)
    @rule(n=st.integers(1, 4))
    def deliver(self, n: int) -> None:
        """The market applies the next ``n`` forwarded commands (one :out entry each)."""
        for input_id, cmd in self.to_market[:n]:
            events = self.apply_market(input_id, cmd)
            self.to_settle.append([e for e in events if isinstance(e, Report | CancelRejected)])
        del self.to_market[:n]

    @precondition(lambda self: self.to_settle)
    @rule(n=st.integers(1, 4))
    def settle(self, n: int) -> None:
        for events in self.to_settle[:n]:
            self.out += 1
            self.run(Settle(self.market.symbol, f"{self.out}-0", events))
            self.ref.settle(events)
            self.filled.update(e.order_id for e in events
                               if isinstance(e, Report) and e.exec_type == "trade")
            for e in events:
                event_name = e.exec_type if isinstance(e, Report) else "cancel_rejected"
                event(f"settled {event_name}")
        del self.to_settle[:n]

    @rule()
    def drain(self) -> None:
        """Deliver and settle everything, then the holds are exact."""
        while self.to_market or self.to_settle:
            if self.to_market:
                self.deliver(len(self.to_market))
            self.settle(len(self.to_settle))
        m = self.market
        if self.real_book:
            resting = [(o.order_id, o.side, o.price, o.qty, o.cum_qty,
                        Fraction(o.fee_num, m.fee_den)) for o in self.book.orders.values()]
        else:
            resting = [(o.order_id, o.side, o.price, o.qty, o.cum_qty, o.fee_exact)
                       for o in self.matcher.resting]
        assert set(self.ledger.orders) == {r[0] for r in resting}
        assert not self.ledger.amends
        for order_id, side, price, qty, cum_qty, exact in resting:
            h = self.ledger.orders[order_id]
            assert (h.price, h.qty, h.cum_qty) == (price, qty, cum_qty)
            assert Fraction(h.fee_num, m.fee_den) == exact
            if side == "sell":
                assert h.hold == m.base_amount(qty - cum_qty)
            else:
                notional = m.notional(price, qty - cum_qty)
                assert h.hold == notional + fee_of(exact, notional, Fraction(m.taker_fee))[0]

    @rule()
    def restart(self) -> None:
        """Snapshot, encode, decode, restore: the restored ledger goes on, a twin checks it."""
        if self.twin is None:
            self.twin = self.ledger
        snap = decode_risk_snapshot(encode_risk_snapshot(
            take_risk_snapshot(self.ledger, f"{self.ms}-0", "0-0")))
        self.ledger = restore_ledger({self.market.symbol: self.market}, "fees", snap)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def agrees_with_reference(self) -> None:
        led = self.ledger
        led._check()
        keys = self.ref.keys() | {(a, s) for a, d in led.accounts.items() for s in d}
        for account, asset in keys:
            assert led.balance(account, asset) == self.ref.balance(account, asset), \
                (account, asset)
        assert {a: t for a, t in led.totals().items() if t} == {
            a: n for a, n in self.net.items() if n}
        assert not led.net_trades or not any(led.net_trades.values())
        assert not self.refused & self.filled


LedgerModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerWithFeeMarket = LedgerModel.TestCase


class RealBookModel(LedgerModel):
    """The same flow through the real matching core."""

    real_book = True


RealBookModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerWithRealBook = RealBookModel.TestCase


@settings(max_examples=200, deadline=None)
@given(balance=st.integers(0, 5000),
       orders=st.lists(st.tuples(st.sampled_from(("buy", "sell", "market_buy")),
                                 st.sampled_from(BUY_PRICES), st.sampled_from(QTYS),
                                 st.integers(1, 900)), max_size=30))
def test_over_spending_accepts_exactly_what_fits(balance: int,
                                                 orders: list[tuple[str, int, int, int]]) -> None:
    """Many orders of one account, more than it has: each is taken iff it fits then."""
    m = FEE_MARKET
    led = Ledger(0, {m.symbol: m})
    events: list[RiskEvent] = []
    led.apply("1-0", 1, Deposit("A", "USD", balance, "u"), events)
    led.apply("1-1", 1, Deposit("A", "TST", balance // 100, "t"), events)
    for n, (kind, price, qty, budget) in enumerate(orders, start=2):
        if kind == "market_buy":
            cmd = Place("A", "buy", "market", 0, quote_qty=budget)
            asset, hold = "USD", budget
        elif kind == "buy":
            cmd = Place("A", "buy", "limit", qty, price)
            asset, hold = "USD", m.buy_hold(price, qty)
        else:
            cmd = Place("A", "sell", "limit", qty, price)
            asset, hold = "TST", qty
        available = led.balance("A", asset)[0]
        events = []
        led.apply(f"{n}-0", n, ToMarket(m.symbol, cmd), events)
        led._check()
        refused = [e for e in events if isinstance(e, MarketAnswer)]
        assert bool(refused) == (hold > available)
        if not refused:
            assert led.balance("A", asset)[0] == available - hold
    assert led.balance("A", "USD")[1] <= balance
    assert len(led.take_outbox()) == len(led.orders) == led.risk_seq

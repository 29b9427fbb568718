"""Property tests: the risk core against the simple reference ledger, with a real market loop.

A flow of transfers (with repeated refs), places (limit buy and sell, market
sell, market buy by budget), cancels, amends and cancel_alls goes through
``ledger.core.Ledger`` and :class:`ReferenceLedger`; what the ledger forwards
is applied by a market (the reference matcher, or the real
``matching.book.OrderBook``, both charging fees) *whenever the test decides*,
and the market's reports come back as ``Settle`` commands later still (what
the settler copies: no ``new`` reports; the reference sees them all), so
fills, cancels and amends race exactly as they do between processes. After
every step: the same answers, the same balances, ``_check()``, no negative
balance, no order both refused for funds and filled, and per asset the sum
of balances equals deposits minus withdrawals. When everything is delivered
and settled, the open holds are exactly what the resting orders may still
cost. A restart (snapshot, encode, restore) changes nothing that follows.

The order types of PROTOCOL.md section B are in the flow too: stops and
take-profits of the four types (limit and market, buy and sell; market buys
by budget), with stop prices across the traded range so that some trigger at
once, some on later trades (pairs of crossing orders move the last price
across them) and some never; GTD orders (plain, icebergs and stops) whose
``expire_time`` is a few ms after the test's clock, expired by the market
when a later command (or a ``Clock`` entry of its own, as an idle engine
writes) reaches that time, or rejected ``EXPIRED`` on arrival; icebergs
(``display_qty`` below ``qty``); amends of all of them, new stop prices
of waiting stops included. Their holds are the reference's: what the order a
stop becomes may cost, taken when it is accepted (changed only by its amends
while it waits) and released by its last report.

"A triggered stop that can no longer be afforded cannot happen, because the
hold covered it": no balance ever goes negative, no market report is refused
for funds and no ``Settle`` is answered with a refusal (a triggered stop never
ends ``rejected``), a stop fills only after its ``triggered`` report, every
fill is paid out of its order's hold (what an order's fills in one ``Settle``
cost is at most what it held before it; the reference asserts it fill by
fill) and no ``Settle`` lowers an ``available``: fills never draw on free
funds. After a drain (and at the end of every example, which is drained) the
untriggered stops hold exactly what they may still cost (the base of
``qty``, the notional at their limit plus the taker fee, or their budget),
icebergs hold for their hidden part too, and no GTD order the market's clock
has passed holds anything.
"""

from __future__ import annotations

import sys
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
from reference_ledger import BECOMES, ReferenceLedger, fee_of
from reference_matcher import ReferenceMatcher

from contract.commands import (
    Amend,
    Cancel,
    CancelAll,
    Clock,
    Command,
    OrderCommand,
    OrderType,
    Place,
    Side,
    Tif,
    decode_command,
)
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
from risk.settler import settled

FEE_MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104",
                    maker_fee="0.001", taker_fee="0.003")
ACCOUNTS = ("A", "B", "C")
CLIENT_IDS = (None, None, None, "c1", "c2")
BUY_PRICES = (98, 99, 100, 101, 102)
SELL_PRICES = (100, 101, 102, 103, 104)
QTYS = (1, 2, 3, 5, 8)
SIDES: tuple[Side, ...] = ("buy", "sell")
# Section B. Stop prices across the traded range (trades print at 98..104, mostly at
# 100..102): a stop buy at 99 triggers at once after the first trade, one at 104 seldom;
# now and then one off the band (97, 105: the market rejects it, INVALID_STOP_PRICE).
STOP_ORDER_TYPES = ("stop_limit", "stop_market", "take_profit_limit", "take_profit_market")
STOP_PRICES = (*range(99, 104), *range(99, 104), *range(99, 104), 98, 104, 98, 104, 97, 105)
STOP_LIMIT_TIFS: tuple[Tif, ...] = ("GTC", "GTC", "GTD", "GTD", "IOC", "FOK")
STOP_MARKET_TIFS: tuple[Tif, ...] = ("GTC", "GTD", "GTD", "FOK")
# expire_time = the order's own entry time + this: 0 is rejected EXPIRED on arrival, the
# others expire as the commands (one ms each) and the market's clock entries go by.
EXPIRY_OFFSETS = (0, 1, 2, 3, 5, 8, 13, 30)


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
        self.triggered: set[str] = set()  # stops whose ``triggered`` report was settled
        self.types: dict[str, str] = {}  # issued order id -> its type

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

    def to(self, cmd: OrderCommand) -> str:
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
            self.types[order_id] = cmd.type

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          data=st.data(), qty=st.sampled_from(QTYS), tif=st.sampled_from(("GTC", "GTC", "IOC")),
          coid=st.sampled_from(CLIENT_IDS), post_only=st.sampled_from((False,) * 5 + (True,)))
    def place_limit(self, account: str, side: Side, data: st.DataObject, qty: int, tif: str,
                    coid: str | None, post_only: bool) -> None:
        price = data.draw(st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        self._place(Place(account, side, "limit", qty, price, tif, post_only,  # type: ignore[arg-type]
                          coid))

    def _expire_time(self, offset: int) -> int:
        """A GTD order's ``expire_time``: ``offset`` ms after the time of its own entry."""
        return self.ms + 1 + offset

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(SIDES),
          level=st.integers(0, 4), qty=st.sampled_from(QTYS),
          kind=st.sampled_from(("gtd", "iceberg", "iceberg", "both")),
          display=st.integers(1, 7), expiry=st.sampled_from(EXPIRY_OFFSETS),
          coid=st.sampled_from(CLIENT_IDS))
    def place_gtd_or_iceberg(self, account: str, side: Side, level: int, qty: int, kind: str,
                             display: int, expiry: int, coid: str | None) -> None:
        """A GTD limit order, an iceberg (``display_qty`` below ``qty`` when it can), or both."""
        price = (BUY_PRICES if side == "buy" else SELL_PRICES)[level]
        tif: Tif = "GTC" if kind == "iceberg" else "GTD"
        shown = 0 if kind == "gtd" else max(1, min(display, qty - 1))
        self._place(Place(account, side, "limit", qty, price, tif, client_order_id=coid,
                          expire_time=self._expire_time(expiry) if tif == "GTD" else 0,
                          display_qty=shown))

    @rule(account=st.sampled_from(ACCOUNTS),
          kind=st.sampled_from(("stop_limit", "take_profit_limit")),
          side=st.sampled_from(SIDES), stop_price=st.sampled_from(STOP_PRICES),
          qty=st.sampled_from(QTYS), tif=st.sampled_from(STOP_LIMIT_TIFS),
          offset=st.sampled_from((0, 1, 2, -1)), display=st.sampled_from((0, 0, 1, 2, 4)),
          expiry=st.sampled_from(EXPIRY_OFFSETS), coid=st.sampled_from(CLIENT_IDS))
    def place_stop_limit(self, account: str, kind: OrderType, side: Side, stop_price: int,
                         qty: int, tif: Tif, offset: int, display: int, expiry: int,
                         coid: str | None) -> None:
        """A stop or take-profit limit, its limit ``offset`` ticks through its trigger
        (marketable when it triggers) or a tick behind; at times an iceberg."""
        price = min(max(stop_price + (offset if side == "buy" else -offset), 98), 104)
        shown = min(display, qty - 1) if tif in ("GTC", "GTD") else 0
        self._place(Place(account, side, kind, qty, price, tif, client_order_id=coid,
                          stop_price=stop_price,
                          expire_time=self._expire_time(expiry) if tif == "GTD" else 0,
                          display_qty=shown))

    @rule(account=st.sampled_from(ACCOUNTS),
          kind=st.sampled_from(("stop_market", "take_profit_market")),
          side=st.sampled_from(SIDES), stop_price=st.sampled_from(STOP_PRICES),
          qty=st.sampled_from(QTYS), tif=st.sampled_from(STOP_MARKET_TIFS),
          budget=st.integers(1, 1500), expiry=st.sampled_from(EXPIRY_OFFSETS),
          coid=st.sampled_from(CLIENT_IDS))
    def place_stop_market(self, account: str, kind: OrderType, side: Side, stop_price: int,
                          qty: int, tif: Tif, budget: int, expiry: int,
                          coid: str | None) -> None:
        """A stop or take-profit market: a sell of ``qty``, a buy by budget (never FOK)."""
        if side == "buy":
            tif = "GTC" if tif == "FOK" else tif
            qty, quote_qty = 0, budget
        else:
            quote_qty = 0
        self._place(Place(account, side, kind, qty, tif=tif, client_order_id=coid,
                          quote_qty=quote_qty, stop_price=stop_price,
                          expire_time=self._expire_time(expiry) if tif == "GTD" else 0))

    @rule(pair=st.sampled_from([(s, b) for s in ACCOUNTS for b in ACCOUNTS if s != b]),
          price=st.sampled_from((99, 100, 101, 102, 103)), maker_side=st.sampled_from(SIDES),
          maker_qty=st.sampled_from((1, 2, 3)))
    def cross(self, pair: tuple[str, str], price: int, maker_side: Side,
              maker_qty: int) -> None:
        """A limit order, then one lot the other way from another account (IOC) at the same
        price: a print at or near it once both reach the market, so the last price moves
        across the stops' triggers; what is left of the first rests for them to take."""
        seller, buyer = pair
        taker_side: Side = "buy" if maker_side == "sell" else "sell"
        maker, taker = (seller, buyer) if maker_side == "sell" else (buyer, seller)
        self._place(Place(maker, maker_side, "limit", maker_qty, price))
        self._place(Place(taker, taker_side, "limit", 1, price, "IOC"))

    @rule(account=st.sampled_from(ACCOUNTS), qty=st.sampled_from(QTYS))
    def place_market_sell(self, account: str, qty: int) -> None:
        self._place(Place(account, "sell", "market", qty))

    @rule(account=st.sampled_from(ACCOUNTS), budget=st.integers(1, 1500))
    def place_market_buy(self, account: str, budget: int) -> None:
        self._place(Place(account, "buy", "market", 0, quote_qty=budget))

    def _target(self, data: st.DataObject, picked: tuple[str, str, str | None] | None = None
                ) -> tuple[str, str | None, str | None]:
        order_id, account, coid = picked or data.draw(st.sampled_from(self.issued))
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
        """Any issued order, with a new ``stop_price`` half the time when it is a stop (its
        new trigger while it waits; refused once it triggered) and one time in ten when it
        is not (refused: ``BAD_REQUEST``)."""
        picked = data.draw(st.sampled_from(self.issued))
        stop = self.types[picked[0]] in STOP_ORDER_TYPES
        stop_price = None
        if data.draw(st.sampled_from((True, False) if stop else (False,) * 9 + (True,)),
                     label="with stop_price"):
            stop_price = data.draw(st.sampled_from(STOP_PRICES), label="stop_price")
        self._amend(Amend(*self._target(data, picked), qty, price, stop_price))

    def _amend(self, cmd: Amend) -> None:
        request_id = f"{self.ms + 1}-0"
        held = {k: v.hold for k, v in self.ledger.orders.items()}
        got = self.to(cmd)
        assert got == self.ref.amend(request_id, cmd)
        grew = any(o.hold > held[k] for k, o in self.ledger.orders.items())
        event(f"amend {got}{' holding more' if grew else ''}"
              f"{' pending' if request_id in self.ledger.amends else ''}")

    def _held_stops(self) -> list[tuple[str, str, str | None]]:
        """The issued stops the reference still holds for (waiting, or not known to be
        done): amends aimed at them mostly find them waiting."""
        return [i for i in self.issued
                if i[0] in self.ref.orders and self.types[i[0]] in STOP_ORDER_TYPES]

    @precondition(lambda self: self._held_stops())
    @rule(data=st.data(), qty=st.sampled_from((None,) * 6 + (*QTYS, 13)),
          price=st.sampled_from((None,) * 10 + (*BUY_PRICES, *SELL_PRICES)),
          stop_price=st.sampled_from((None, *STOP_PRICES)))
    def amend_stop(self, data: st.DataObject, qty: int | None, price: int | None,
                   stop_price: int | None) -> None:
        """An amend of a stop still held: mostly a new trigger (met by the last trade at
        times: it triggers at once), often a new quantity or limit too (none for a
        ``*_market`` one: the market refuses a price, and a quantity of a budget)."""
        picked = data.draw(st.sampled_from(self._held_stops()))
        if BECOMES[self.types[picked[0]]] == "market":  # mostly what the market takes
            held = self.ref.orders[picked[0]]
            price = None
            qty = None if held.side == "buy" else qty  # a budget has no quantity
        self._amend(Amend(*self._target(data, picked), qty, price, stop_price))

    @rule(account=st.sampled_from(ACCOUNTS))
    def cancel_all(self, account: str) -> None:
        assert self.to(CancelAll(account)) == "forwarded"

    @rule(dt=st.sampled_from((1, 2, 5, 20)))
    def clock(self, dt: int) -> None:
        """Time passes with no command: the market's own ``Clock`` entry (an idle engine
        writes one when a GTD expiry is due), after what was forwarded before it."""
        self.ms += dt
        self.to_market.append((f"{self.ms}-0", Clock()))

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
        m = self.market
        for events in self.to_settle[:n]:
            self.out += 1
            held = self.ledger.orders
            holds = {e.order_id: held[e.order_id].hold for e in events
                     if isinstance(e, Report) and e.exec_type == "trade" and e.order_id in held}
            available = {(a, s): self.ledger.balance(a, s)[0]
                         for a in (*ACCOUNTS, "fees") for s in (m.base, m.quote)}
            # The ledger gets what the settler copies (no ``new`` reports), the reference
            # every report: the same balances after every step say ``new`` changes none.
            answers = self.run(Settle(self.market.symbol, f"{self.out}-0",
                                      [e for e in events if settled(e)]))
            assert not any(isinstance(e, MarketAnswer) for e in answers)
            self.ref.settle(events)
            # Every fill is paid out of its order's hold (a triggered stop's too): what the
            # order's fills in this entry cost never exceeds what it held before it, and
            # settling never takes from what is available.
            paid: dict[str, int] = {}
            for e in events:
                if not isinstance(e, Report):
                    event("settled cancel_rejected")
                    continue
                event(f"settled {e.exec_type}")
                assert e.reason != "INSUFFICIENT_FUNDS", "a market refused an order for funds"
                if e.exec_type == "triggered":
                    self.triggered.add(e.order_id)
                    at_once = any(isinstance(r, Report) and r.order_id == e.order_id
                                  and r.exec_type in ("new", "replaced") for r in events)
                    event(f"triggered {e.type} {e.side}{' at once' if at_once else ' later'}")
                elif e.order_id in self.triggered:
                    assert e.status != "rejected", "a triggered stop was rejected"
                if e.reason == "EXPIRED":
                    event(f"expired GTD {e.exec_type}")
                if e.exec_type == "trade":
                    self.filled.add(e.order_id)
                    assert e.order_id in holds, "a fill of an order the ledger does not hold"
                    if e.type in STOP_ORDER_TYPES:
                        assert e.order_id in self.triggered, "a stop filled untriggered"
                        event(f"settled a triggered {e.type} {e.side}'s fill")
                    notional = m.notional(e.last_price, e.last_qty)
                    paid[e.order_id] = paid.get(e.order_id, 0) + (
                        notional + e.fee if e.side == "buy" else m.base_amount(e.last_qty))
            for order_id, amount in paid.items():
                assert amount <= holds[order_id], f"{order_id}'s fills beyond its hold"
            for (account, asset), before in available.items():
                assert self.ledger.balance(account, asset)[0] >= before, \
                    f"settling took from {account}'s available {asset}"
        del self.to_settle[:n]

    @rule()
    def drain(self) -> None:
        """Deliver and settle everything, then the holds are exact."""
        while self.to_market or self.to_settle:
            if self.to_market:
                self.deliver(len(self.to_market))
            self.settle(len(self.to_settle))
        m = self.market
        # (id, side, type, price, qty, cum_qty, exact fees, budget, untriggered, expire_time,
        #  display_qty): the resting orders and the untriggered stops
        open_orders: list[tuple[str, str, str, int, int, int, Fraction, int, bool, int, int]]
        if self.real_book:
            open_orders = [(o.order_id, o.side, o.type, o.price, o.qty, o.cum_qty,
                            Fraction(o.fee_num, m.fee_den), o.quote_qty, o.untriggered,
                            o.expire_time, o.display) for o in self.book.orders.values()]
            clock = self.book.clock
        else:
            open_orders = [(o.order_id, o.side, o.type, o.price, o.qty, o.cum_qty, o.fee_exact,
                            o.quote_qty, waiting, o.expire_time, o.display_qty)
                           for waiting, orders in ((False, self.matcher.resting),
                                                   (True, self.matcher.untriggered))
                           for o in orders]
            clock = self.matcher.clock
        assert set(self.ledger.orders) == {r[0] for r in open_orders}
        assert not self.ledger.amends
        for (order_id, side, type_, price, qty, cum_qty, exact, budget, untriggered,
             expire_time, display) in open_orders:
            h = self.ledger.orders[order_id]
            assert (h.price, h.qty, h.cum_qty) == (price, qty, cum_qty)
            assert Fraction(h.fee_num, m.fee_den) == exact
            assert not expire_time or expire_time > clock, f"{order_id} held past its time"
            if untriggered:
                # Off-book, nothing of it filled, no amend pending: it holds exactly what
                # the order it becomes may cost at its limit and quantity, or its budget.
                event(f"drained with an untriggered {type_} {side}")
                assert cum_qty == 0 and exact == 0
                if side == "sell":
                    assert h.hold == m.base_amount(qty)
                elif BECOMES[type_] == "market":
                    assert h.hold == budget == h.quote_qty
                else:
                    notional = m.notional(price, qty)
                    assert h.hold == notional + fee_of(Fraction(0), notional,
                                                       Fraction(m.taker_fee))[0]
                continue
            assert BECOMES[type_] == "limit", f"{order_id}: a {type_} order rests"
            if display and display < qty - cum_qty:
                event("drained with an iceberg hiding a part")  # held too, not only its slice
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

    def teardown(self) -> None:
        """Every example ends delivered and settled, so the drain's checks see its tail too
        (what its last trades triggered, what its clock expired); not after a failure,
        whose report that would hide."""
        if sys.exc_info()[0] is None:
            self.drain()
            self.agrees_with_reference()

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def agrees_with_reference(self) -> None:
        led = self.ledger
        led._check()
        keys = self.ref.keys() | {(a, s) for a, d in led.accounts.items() for s in d}
        for account, asset in keys:
            want = self.ref.balance(account, asset)
            assert led.balance(account, asset) == want, (account, asset)
            assert min(want) >= 0, f"negative balance {account} {asset}: {want}"
        assert {a: t for a, t in led.totals().items() if t} == {
            a: n for a, n in self.net.items() if n}
        assert not led.net_trades or not any(led.net_trades.values())
        assert not self.refused & self.filled
        assert not self.refused & self.triggered


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
       orders=st.lists(st.tuples(st.sampled_from(("buy", "sell", "market_buy", "stop_buy",
                                                  "stop_market_buy", "stop_sell")),
                                 st.sampled_from(BUY_PRICES), st.sampled_from(QTYS),
                                 st.integers(1, 900)), max_size=30))
def test_over_spending_accepts_exactly_what_fits(balance: int,
                                                 orders: list[tuple[str, int, int, int]]) -> None:
    """Many orders of one account, more than it has: each is taken iff it fits then (a stop
    or take-profit by what the order it becomes holds: it is not free until it triggers)."""
    m = FEE_MARKET
    led = Ledger(0, {m.symbol: m})
    events: list[RiskEvent] = []
    led.apply("1-0", 1, Deposit("A", "USD", balance, "u"), events)
    led.apply("1-1", 1, Deposit("A", "TST", balance // 100, "t"), events)
    for n, (kind, price, qty, budget) in enumerate(orders, start=2):
        if kind == "market_buy":
            cmd = Place("A", "buy", "market", 0, quote_qty=budget)
            asset, hold = "USD", budget
        elif kind == "stop_buy":
            cmd = Place("A", "buy", "stop_limit", qty, price, stop_price=price)
            asset, hold = "USD", m.buy_hold(price, qty)
        elif kind == "stop_market_buy":
            cmd = Place("A", "buy", "take_profit_market", 0, quote_qty=budget,
                        stop_price=price)
            asset, hold = "USD", budget
        elif kind == "stop_sell":
            cmd = Place("A", "sell", "stop_market", qty, stop_price=price)
            asset, hold = "TST", qty
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

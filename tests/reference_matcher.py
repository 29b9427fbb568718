"""A deliberately simple reference matcher, and the random workload fed to it.

The differential tests run every command through both ``matching.book.OrderBook``
and :class:`ReferenceMatcher` and require identical events and books. The
reference is written straight from the matching rules with plain lists and
linear scans, so that it is obviously right rather than fast: all resting
orders live in one list in arrival order, a side's queue is that list filtered
and stably sorted by price, and the book update is the difference of the level
totals before and after the command. It must never import ``matching.book``.

Fees are kept as exact fractions per order (``fractions.Fraction`` of the
market's fee strings): a fill pays what brings the order's total paid to
``ceil(exact fees so far)``. A market buy by budget (``quote_qty``) tries
quantities one lot at a time and takes the largest whose notional plus fee
fits in what is left. Forwarded commands (risk stage): :meth:`apply` takes the
id and the time apart, and :meth:`apply_forwarded` drops a ``(shard,
risk_seq)`` at or below the highest applied from that shard.

Cost: O(resting orders) per fill, per lookup and per command (tests only).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction

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
)
from contract.market import Market

Book = tuple[list[tuple[int, int]], list[tuple[int, int]]]
OpenOrder = tuple[str, str | None, str, int, int, int, int]
QueueEntry = tuple[str, str, str | None, str, int, int, int, int, bool, str, Fraction]


@dataclass
class RefOrder:
    """One order as the rules describe it; ``leaves`` is derived, never stored."""

    order_id: str
    account: str
    client_order_id: str | None
    side: Side
    type: OrderType
    tif: Tif
    price: int
    qty: int
    post_only: bool
    stp: StpMode
    cum_qty: int = 0
    cum_notional: int = 0
    arrival: int = 0
    quote_qty: int = 0  # a market buy by budget (qty then follows cum_qty)
    fee_exact: Fraction = Fraction(0)  # exact fees of its fills so far
    fee_paid: int = 0  # what its fills were charged: ceil(fee_exact)

    @property
    def leaves(self) -> int:
        return self.qty - self.cum_qty

    @property
    def open_status(self) -> Status:
        return "partially_filled" if self.cum_qty else "new"


@dataclass
class ReferenceMatcher:
    """Price-time-priority matching over a plain list; same events as the engine.

    ``apply(input_id, cmd)`` returns the events; :meth:`depth`,
    :meth:`open_orders` and :meth:`queue` expose the book for comparison.
    """

    market: Market
    seq: int = 0
    trade_id: int = 0
    arrivals: int = 0
    resting: list[RefOrder] = field(default_factory=list)  # arrival order
    events: list[Event] = field(default_factory=list)
    risk_seqs: dict[int, int] = field(default_factory=dict)

    # -- views ----------------------------------------------------------------

    def side_queue(self, side: str) -> list[RefOrder]:
        """Resting orders of ``side`` best first, then oldest first (stable sort)."""
        orders = [o for o in self.resting if o.side == side]
        if side == "buy":
            return sorted(orders, key=lambda o: -o.price)
        return sorted(orders, key=lambda o: o.price)

    def depth(self, side: str) -> list[tuple[int, int]]:
        totals: dict[int, int] = {}
        for o in self.side_queue(side):
            totals[o.price] = totals.get(o.price, 0) + o.leaves
        return list(totals.items())

    def book(self) -> Book:
        return self.depth("buy"), self.depth("sell")

    def open_orders(self, account: str) -> list[OpenOrder]:
        """The account's resting orders, oldest arrival first."""
        return [(o.order_id, o.client_order_id, o.side, o.price, o.qty, o.cum_qty,
                 o.cum_notional) for o in self.resting if o.account == account]

    def queue(self) -> list[QueueEntry]:
        """Every resting order: bids best first, then asks best first, FIFO per level."""
        return [(o.order_id, o.account, o.client_order_id, o.side, o.price, o.qty, o.cum_qty,
                 o.cum_notional, o.post_only, o.stp, o.fee_exact)
                for side in ("buy", "sell") for o in self.side_queue(side)]

    # -- commands -------------------------------------------------------------

    def apply_forwarded(self, entry_id: str, shard: int, risk_seq: int, order_id: str,
                        cmd: Command) -> list[Event]:
        """A command the risk stage forwarded: at most once per ``(shard, risk_seq)``."""
        if risk_seq <= self.risk_seqs.get(shard, -1):
            return []
        self.risk_seqs[shard] = risk_seq
        return self.apply(order_id, cmd, int(entry_id.split("-")[0]))

    def reject_input(self, input_id: str, ts: int, reason: str) -> list[Event]:
        self.seq += 1
        return [InputRejected(self.seq, ts, input_id, reason)]

    def apply(self, input_id: str, cmd: Command, ts: int | None = None) -> list[Event]:
        if ts is None:
            ts = int(input_id.split("-")[0])
        self.events = []
        bids_before, asks_before = self.book()
        if isinstance(cmd, Place):
            self._place(input_id, ts, cmd)
        elif isinstance(cmd, Cancel):
            self._cancel(input_id, ts, cmd)
        elif isinstance(cmd, Amend):
            self._amend(input_id, ts, cmd)
        elif isinstance(cmd, CancelAll):
            self._cancel_all(ts, cmd)
        bids_after, asks_after = self.book()
        bid_changes = _changed(dict(bids_before), dict(bids_after), best_is_highest=True)
        ask_changes = _changed(dict(asks_before), dict(asks_after), best_is_highest=False)
        if bid_changes or ask_changes:
            self.seq += 1
            self.events.append(BookUpdate(self.seq, ts, bid_changes, ask_changes))
        return self.events

    def _report(self, ts: int, o: RefOrder, exec_type: ExecType, status: Status,
                reason: str | None = None) -> None:
        terminal = status not in ("new", "partially_filled")
        self.seq += 1
        self.events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type, o.tif,
            o.price, o.qty, exec_type, status, 0, 0, o.cum_qty, 0 if terminal else o.leaves,
            o.cum_notional, None, None, reason,
        ))

    def _fill_report(self, ts: int, o: RefOrder, qty: int, price: int,
                     liquidity: Liquidity, fee: int, status: Status | None = None) -> None:
        self.seq += 1
        if status is None:
            status = "filled" if o.leaves == 0 else "partially_filled"
        self.events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type, o.tif,
            o.price, o.qty, "trade", status, qty,
            price, o.cum_qty, o.leaves, o.cum_notional, liquidity, self.trade_id, None, fee,
        ))

    def _fee(self, o: RefOrder, notional: int, liquidity: Liquidity) -> tuple[int, Fraction]:
        """What a fill of ``notional`` quote units charges ``o``, and its new exact total."""
        rate = Fraction(self.market.maker_fee if liquidity == "maker"
                        else self.market.taker_fee)
        exact = o.fee_exact + notional * rate
        return math.ceil(exact) - o.fee_paid, exact

    def _charge(self, o: RefOrder, notional: int, liquidity: Liquidity) -> int:
        fee, o.fee_exact = self._fee(o, notional, liquidity)
        o.fee_paid += fee
        return fee

    def _cost(self, o: RefOrder, price: int, qty: int) -> int:
        """Notional plus taker fee of a fill of ``qty`` lots at ``price`` for ``o``."""
        notional = self.market.notional(price, qty)
        return notional + self._fee(o, notional, "taker")[0]

    def _reject(self, ts: int, request_id: str, account: str, order_id: str | None,
                client_order_id: str | None, reason: str) -> None:
        self.seq += 1
        self.events.append(CancelRejected(self.seq, ts, account, order_id, client_order_id,
                                          request_id, reason))

    def _crossing(self, side: Side, type_: OrderType, price: int) -> list[RefOrder]:
        """Opposite resting orders a taker could reach, in the order it would reach them."""
        opposite = self.side_queue("sell" if side == "buy" else "buy")
        if type_ == "market":
            return opposite
        if side == "buy":
            return [m for m in opposite if m.price <= price]
        return [m for m in opposite if m.price >= price]

    def _place(self, input_id: str, ts: int, cmd: Place) -> None:
        limit = cmd.type == "limit"
        tif: Tif = cmd.tif if limit or cmd.tif == "FOK" else "IOC"
        o = RefOrder(input_id, cmd.account, cmd.client_order_id, cmd.side, cmd.type, tif,
                     cmd.price if limit else 0, cmd.qty, cmd.post_only, cmd.stp,
                     quote_qty=cmd.quote_qty)
        reason = None
        budget = cmd.type == "market" and cmd.side == "buy" and cmd.qty == 0 \
            and cmd.tif != "FOK"
        if cmd.quote_qty != 0:
            if cmd.quote_qty < 0 or not budget:
                reason = "BAD_REQUEST"
        elif not self.market.min_lots <= cmd.qty <= self.market.max_lots:
            reason = "INVALID_QTY"
        elif limit and not self.market.min_ticks <= cmd.price <= self.market.max_ticks:
            reason = "INVALID_PRICE"
        elif cmd.client_order_id is not None and any(
                r.account == cmd.account and r.client_order_id == cmd.client_order_id
                for r in self.resting):
            reason = "DUPLICATE_CLIENT_ORDER_ID"
        elif cmd.post_only and (not limit or self._crossing(o.side, o.type, o.price)):
            reason = "POST_ONLY_WOULD_TAKE"
        if reason is not None:
            self._report(ts, o, "rejected", "rejected", reason)
            return
        self._report(ts, o, "new", "new")
        if o.quote_qty:
            self._take_budget(ts, o)
        else:
            self._take(ts, o)

    def _take_budget(self, ts: int, o: RefOrder) -> None:
        """A market buy by budget: as many lots as fit, maker after maker; never rests."""
        left = o.quote_qty
        reason: str | None = "NO_LIQUIDITY"
        while True:
            reachable = self._crossing("buy", "market", 0)
            if not reachable:
                break
            maker = reachable[0]
            if maker.account == o.account and o.stp != "none":
                if o.stp == "cancel_taker":
                    reason = "STP"
                    break
                self.resting.remove(maker)
                self._report(ts, maker, "canceled", "canceled", "STP")
                if o.stp == "cancel_both":
                    reason = "STP"
                    break
                continue
            price = maker.price
            qty = 0
            while qty < maker.leaves and self._cost(o, price, qty + 1) <= left:
                qty += 1
            if qty == 0:
                break  # the budget cannot pay for one more lot here
            notional = self.market.notional(price, qty)
            self.trade_id += 1
            maker.cum_qty += qty
            maker.cum_notional += qty * price
            o.cum_qty += qty
            o.qty = o.cum_qty
            o.cum_notional += qty * price
            maker_fee = self._charge(maker, notional, "maker")
            taker_fee = self._charge(o, notional, "taker")
            left -= notional + taker_fee
            if maker.leaves == 0:
                self.resting.remove(maker)
            filled = self._cost(o, price, 1) > left
            self.seq += 1
            self.events.append(Trade(self.seq, ts, self.trade_id, price, qty, "buy",
                                     maker.order_id, o.order_id))
            self._fill_report(ts, maker, qty, price, "maker", maker_fee)
            self._fill_report(ts, o, qty, price, "taker", taker_fee,
                              "filled" if filled else "partially_filled")
            if filled:
                reason = None
                break
        if reason is not None:
            self._report(ts, o, "expired", "expired", reason)

    def _fillable(self, o: RefOrder) -> int:
        available = 0
        for maker in self._crossing(o.side, o.type, o.price):
            if maker.account == o.account and o.stp != "none":
                if o.stp == "cancel_maker":
                    continue
                break
            available += maker.leaves
        return available

    def _take(self, ts: int, o: RefOrder) -> None:
        """Match ``o`` as taker, then rest (GTC limit) or expire its remainder."""
        if o.tif == "FOK" and self._fillable(o) < o.leaves:
            self._report(ts, o, "expired", "expired", "FOK_UNFILLABLE")
            return
        stopped_by_stp = False
        while o.leaves > 0:
            reachable = self._crossing(o.side, o.type, o.price)
            if not reachable:
                break
            maker = reachable[0]
            if maker.account == o.account and o.stp != "none":
                if o.stp == "cancel_taker":
                    stopped_by_stp = True
                    break
                self.resting.remove(maker)
                self._report(ts, maker, "canceled", "canceled", "STP")
                if o.stp == "cancel_both":
                    stopped_by_stp = True
                    break
                continue
            qty = min(maker.leaves, o.leaves)
            price = maker.price
            self.trade_id += 1
            for party in (maker, o):
                party.cum_qty += qty
                party.cum_notional += qty * price
            notional = self.market.notional(price, qty)
            maker_fee = self._charge(maker, notional, "maker")
            taker_fee = self._charge(o, notional, "taker")
            if maker.leaves == 0:
                self.resting.remove(maker)
            self.seq += 1
            self.events.append(Trade(self.seq, ts, self.trade_id, price, qty, o.side,
                                     maker.order_id, o.order_id))
            self._fill_report(ts, maker, qty, price, "maker", maker_fee)
            self._fill_report(ts, o, qty, price, "taker", taker_fee)
        if o.leaves == 0:
            return
        if stopped_by_stp:
            self._report(ts, o, "expired", "expired", "STP")
        elif o.type == "limit" and o.tif == "GTC":
            self.arrivals += 1
            o.arrival = self.arrivals
            self.resting.append(o)
        else:
            self._report(ts, o, "expired", "expired",
                         "NO_LIQUIDITY" if o.type == "market" else None)

    def _find(self, account: str, order_id: str | None,
              client_order_id: str | None) -> RefOrder | None:
        for o in self.resting:
            if o.account != account:
                continue
            if order_id is not None:
                if o.order_id == order_id and client_order_id in (None, o.client_order_id):
                    return o
            elif client_order_id is not None and o.client_order_id == client_order_id:
                return o
        return None

    def _cancel(self, input_id: str, ts: int, cmd: Cancel) -> None:
        o = self._find(cmd.account, cmd.order_id, cmd.client_order_id)
        if o is None:
            self._reject(ts, input_id, cmd.account, cmd.order_id, cmd.client_order_id,
                         "UNKNOWN_ORDER")
            return
        self.resting.remove(o)
        self._report(ts, o, "canceled", "canceled", "USER_CANCEL")

    def _amend(self, input_id: str, ts: int, cmd: Amend) -> None:
        o = self._find(cmd.account, cmd.order_id, cmd.client_order_id)
        reason = None
        if o is None:
            reason = "UNKNOWN_ORDER"
        else:
            new_qty = o.qty if cmd.qty is None else cmd.qty
            new_price = o.price if cmd.price is None else cmd.price
            if cmd.qty is None and cmd.price is None:
                reason = "BAD_REQUEST"
            elif new_qty <= o.cum_qty or not (
                    self.market.min_lots <= new_qty <= self.market.max_lots):
                reason = "INVALID_QTY"
            elif not self.market.min_ticks <= new_price <= self.market.max_ticks:
                reason = "INVALID_PRICE"
            elif o.post_only and self._crossing(o.side, "limit", new_price):
                reason = "POST_ONLY_WOULD_TAKE"
        if o is None or reason is not None:
            self._reject(ts, input_id, cmd.account, cmd.order_id, cmd.client_order_id,
                         reason or "UNKNOWN_ORDER")
            return
        if new_price == o.price and new_qty <= o.qty:
            o.qty = new_qty  # keeps its place in the queue
            self._report(ts, o, "replaced", o.open_status)
            return
        self.resting.remove(o)
        o.qty = new_qty
        o.price = new_price
        self._report(ts, o, "replaced", o.open_status)
        self._take(ts, o)

    def _cancel_all(self, ts: int, cmd: CancelAll) -> None:
        victims = [o for o in self.resting if o.account == cmd.account
                   and (cmd.order_ids is None or o.order_id in cmd.order_ids)]
        for o in victims:
            self.resting.remove(o)
            self._report(ts, o, "canceled", "canceled", cmd.reason)


def _changed(before: dict[int, int], after: dict[int, int],
             best_is_highest: bool) -> list[tuple[int, int]]:
    prices = sorted(set(before) | set(after), reverse=best_is_highest)
    return [(p, after.get(p, 0)) for p in prices if before.get(p, 0) != after.get(p, 0)]


# -- random workload ----------------------------------------------------------

WORKLOAD_MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104")
# The same market with fees: one quote unit per tick x lot (fees round up a lot), and one
# with a tenth of a unit, so that fees of 15 and 25 bps have fractions to carry.
FEE_MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104",
                    maker_fee="0.001", taker_fee="0.002")
FINE_FEE_MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104",
                         maker_fee="0.0015", taker_fee="0.0025", quote_decimals=1)
WORKLOAD_MARKETS = (WORKLOAD_MARKET, FEE_MARKET, FINE_FEE_MARKET)
ACCOUNTS = ("A", "B", "C", "D")
SIDES: tuple[Side, ...] = ("buy", "sell")
TIFS: tuple[Tif, ...] = ("GTC", "GTC", "GTC", "GTC", "IOC", "FOK")
CLIENT_IDS = (None, None, None, "c1", "c2", "c3")
# Narrow, overlapping bands (orders cross often, queues still build up) and,
# rarely, a price or quantity out of the market's range.
BUY_PRICES = (*range(98, 103), *range(98, 103), *range(99, 102), *range(99, 102), 97)
SELL_PRICES = (*range(100, 105), *range(100, 105), *range(101, 104), *range(101, 104), 105)
PRICES = (*range(98, 105), *range(98, 105), *range(99, 104), 97, 105)
QTYS = (*range(1, 7), *range(1, 4), 10) * 4 + (0, 21)
STP_MODES: tuple[StpMode, ...] = ("cancel_taker", "cancel_maker", "cancel_both", "none")


@dataclass
class Workload:
    """Random commands over a few accounts, aimed at open orders most of the time.

    ``next(open_orders)`` takes ``(order_id, account, client_order_id)`` of the orders now
    resting (from the reference) so that cancels and amends mostly hit them;
    the rest target orders that are gone, never existed or belong to others.
    """

    rng: random.Random
    market: Market = WORKLOAD_MARKET  # budgets are scaled to its quote unit
    ms: int = 1_700_000_000_000
    n: int = 0
    issued: list[tuple[str, str, str | None]] = field(default_factory=list)

    def next_id(self) -> str:
        if self.rng.random() < 0.5:
            self.ms += self.rng.randint(1, 3)
            self.n = 0
        else:
            self.n += 1
        return f"{self.ms}-{self.n}"

    def next(self, open_orders: list[tuple[str, str, str | None]]) -> tuple[str, Command]:
        """The next ``(input_id, command)``; records placements for later targeting."""
        input_id = self.next_id()
        cmd = self.command(open_orders)
        if isinstance(cmd, Place):
            self.issued.append((input_id, cmd.account, cmd.client_order_id))
        return input_id, cmd

    def command(self, open_orders: list[tuple[str, str, str | None]]) -> Command:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6 or not self.issued:
            return self._place(rng.choice(ACCOUNTS))
        pool = open_orders if open_orders and rng.random() < 0.75 else self.issued
        order_id, account, coid = rng.choice(pool)
        if rng.random() < 0.1:
            account = rng.choice(ACCOUNTS)
        if rng.random() < 0.05:
            order_id = f"{self.ms + 1}-99"  # never issued
        how = rng.random()
        if coid is None or how < 0.1:
            coid = rng.choice(CLIENT_IDS[3:])
        if how < 0.3:
            target = None  # by client_order_id
        elif how < 0.35:
            target = order_id  # by both
        else:
            target, coid = order_id, None
        if roll < 0.72:
            return Cancel(account, target, coid)
        if roll < 0.95:
            qty = rng.choice((None, *QTYS))
            price = rng.choice((None, None, *PRICES))
            if qty is None and price is None and rng.random() < 0.9:
                qty = rng.choice(QTYS)
            return Amend(account, target, coid, qty, price)
        ids = None
        if rng.random() < 0.5:
            ids = [i for i, _, _ in rng.sample(self.issued, min(3, len(self.issued)))]
        return CancelAll(account, ids, rng.choice(("USER_CANCEL", "CANCEL_ON_DISCONNECT")))

    def budget(self) -> int:
        """A market buy's ``quote_qty``: from less than one lot to a sweep of several levels."""
        return budget_of(self.market, self.rng.randint(0, 1_200))

    def _place(self, account: str) -> Place:
        rng = self.rng
        if rng.random() < 0.05:
            return self._budget_place(account)
        side = rng.choice(SIDES)
        type_: OrderType = "market" if rng.random() < 0.08 else "limit"
        price = rng.choice(BUY_PRICES if side == "buy" else SELL_PRICES)
        return Place(account, side, type_, rng.choice(QTYS), price if type_ == "limit" else 0,
                     rng.choice(TIFS), rng.random() < 0.1, rng.choice(CLIENT_IDS),
                     rng.choice(STP_MODES))

    def _budget_place(self, account: str) -> Place:
        """A market buy by budget; rarely an invalid one (on a sell, a limit, with qty, FOK)."""
        rng = self.rng
        roll = rng.random()
        side: Side = "sell" if roll < 0.03 else "buy"
        type_: OrderType = "limit" if 0.03 <= roll < 0.06 else "market"
        qty = rng.choice(QTYS) if 0.06 <= roll < 0.09 else 0
        tif: Tif = "FOK" if 0.09 <= roll < 0.11 else rng.choice(("GTC", "IOC"))
        return Place(account, side, type_, qty, rng.choice(BUY_PRICES) if type_ == "limit" else 0,
                     tif, rng.random() < 0.03, rng.choice(CLIENT_IDS), rng.choice(STP_MODES),
                     self.budget())


def budget_of(market: Market, ticks_lots: int) -> int:
    """A budget of about ``ticks_lots`` tick x lots of ``market``, plus a few quote units."""
    return market.notional(ticks_lots, 1) + ticks_lots % 7

"""A deliberately simple reference matcher, and the random workload fed to it.

The differential tests run every command through both ``matching.book.OrderBook``
and :class:`ReferenceMatcher` and require identical events and books. The
reference is written straight from the matching rules with plain lists and
linear scans, so that it is obviously right rather than fast: all resting
orders live in one list in priority order, a side's queue is that list filtered
and stably sorted by price, and the book update is the difference of the level
totals of the levels the command touched (an order entered, left, traded or changed
its quantity there). It must never import ``matching.book``.

Fees are kept as exact fractions per order (``fractions.Fraction`` of the
market's fee strings): a fill pays what brings the order's total paid to
``ceil(exact fees so far)``. A market buy by budget (``quote_qty``) tries
quantities one lot at a time and takes the largest whose notional plus fee
fits in what is left. Forwarded commands (risk stage): :meth:`apply` takes the
id and the time apart, and :meth:`apply_forwarded` drops a ``(shard,
risk_seq)`` at or below the highest applied from that shard.

Order types of PROTOCOL section B: untriggered stops wait in a second list (in
priority order) and are scanned after every print; GTD orders are expired by a
scan before each command; an iceberg keeps its shown part in ``visible`` and
goes to the back of the list (a new priority) when it is refilled.

Cost: O(open orders) per fill, per print, per lookup and per command (tests only).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from contract.commands import (
    LIMIT_TYPES,
    MARKET_TYPES,
    STOP_TYPES,
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
    triggers_above,
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
QueueEntry = tuple[str, str, str | None, str, int, int, int, int, bool, str, Fraction, int,
                   str, str, int, int, int, int | None, bool, int]


@dataclass(eq=False)
class RefOrder:
    """One order as the rules describe it; ``leaves`` is derived, never stored.

    ``price`` is 0 for the market types; ``visible`` is the shown part of a resting
    iceberg (``display_qty`` > 0), meaningless otherwise.
    """

    order_id: str
    account: str
    client_order_id: str | None
    side: Side
    type: OrderType
    tif: Tif  # as its reports state it (contract.commands.report_tif)
    price: int
    qty: int
    post_only: bool
    stp: StpMode
    cum_qty: int = 0
    cum_notional: int = 0
    prio: int = 0
    quote_qty: int = 0  # a market buy by budget (qty then follows cum_qty)
    fee_exact: Fraction = Fraction(0)  # exact fees of its fills so far
    fee_paid: int = 0  # what its fills were charged: ceil(fee_exact)
    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0
    visible: int = 0

    @property
    def leaves(self) -> int:
        return self.qty - self.cum_qty

    @property
    def shown(self) -> int:
        """What the book shows of it while it rests: its slice for an iceberg."""
        return self.visible if self.display_qty else self.leaves

    @property
    def open_status(self) -> Status:
        return "partially_filled" if self.cum_qty else "new"

    def triggered_by(self, price: int | None) -> bool:
        """Whether a trade at ``price`` (None: no trade yet) meets this stop's condition."""
        if price is None:
            return False
        if triggers_above(self.type, self.side):
            return price >= self.stop_price
        return price <= self.stop_price


@dataclass
class ReferenceMatcher:
    """Price-time-priority matching over plain lists; same events as the engine.

    ``apply(input_id, cmd)`` returns the events; :meth:`depth`,
    :meth:`open_orders` and :meth:`queue` expose the book for comparison.
    ``resting`` holds the orders in the book and ``untriggered`` the stops waiting
    off-book, each in priority order; ``tally`` counts rare paths (iceberg refills,
    cascades) so that workloads can show they reached them.
    """

    market: Market
    seq: int = 0
    trade_id: int = 0
    prio: int = 0
    resting: list[RefOrder] = field(default_factory=list)  # priority order
    untriggered: list[RefOrder] = field(default_factory=list)  # priority order
    last_price: int | None = None  # of the last trade ever printed
    clock: int = 0  # the time of the last command applied
    events: list[Event] = field(default_factory=list)
    risk_seqs: dict[int, int] = field(default_factory=dict)
    tally: Counter[str] = field(default_factory=Counter)
    # Per command: the prices printed (and whether a triggered stop printed them), how
    # many of them were examined for stops, and the triggered stops waiting to execute.
    _prints: list[tuple[int, bool]] = field(default_factory=list)
    _examined: int = 0
    _queued: list[RefOrder] = field(default_factory=list)
    _executing_stop: bool = False
    _touched: set[tuple[str, int]] = field(default_factory=set)  # (side, price) this command

    # -- views ----------------------------------------------------------------

    def side_queue(self, side: str) -> list[RefOrder]:
        """Resting orders of ``side`` best first, then oldest priority first (stable sort)."""
        orders = [o for o in self.resting if o.side == side]
        if side == "buy":
            return sorted(orders, key=lambda o: -o.price)
        return sorted(orders, key=lambda o: o.price)

    def depth(self, side: str) -> list[tuple[int, int]]:
        """``(price, total shown)`` per level, best first: hidden iceberg parts excluded."""
        totals: dict[int, int] = {}
        for o in self.side_queue(side):
            totals[o.price] = totals.get(o.price, 0) + o.shown
        return list(totals.items())

    def book(self) -> Book:
        return self.depth("buy"), self.depth("sell")

    def open(self) -> list[RefOrder]:
        """Every open order (resting or untriggered), oldest priority first."""
        return sorted(self.resting + self.untriggered, key=lambda o: o.prio)

    def open_orders(self, account: str) -> list[OpenOrder]:
        """The account's open orders, oldest priority first."""
        return [(o.order_id, o.client_order_id, o.side, o.price, o.qty, o.cum_qty,
                 o.cum_notional) for o in self.open() if o.account == account]

    def queue(self) -> list[QueueEntry]:
        """Every open order as a snapshot lists it: bids best first, then asks best first,
        FIFO per level, then the untriggered stops in priority order. ``visible`` is
        None where the rules give it no meaning (not a resting iceberg)."""
        def entry(o: RefOrder, untriggered: bool) -> QueueEntry:
            visible = o.visible if o.display_qty and not untriggered else None
            return (o.order_id, o.account, o.client_order_id, o.side, o.price, o.qty,
                    o.cum_qty, o.cum_notional, o.post_only, o.stp, o.fee_exact, o.prio,
                    o.type, o.tif, o.stop_price, o.expire_time, o.display_qty, visible,
                    untriggered, o.quote_qty)
        return ([entry(o, False) for side in ("buy", "sell") for o in self.side_queue(side)]
                + [entry(o, True) for o in self.untriggered])

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
        """Expire what is due at the command's time, apply it, run the stops it triggered."""
        if ts is None:
            ts = int(input_id.split("-")[0])
        self.events = []
        self._prints = []
        self._examined = 0
        self.clock = ts
        self._touched = set()
        self._expire_due(ts)
        if isinstance(cmd, Place):
            self._place(input_id, ts, cmd)
        elif isinstance(cmd, Cancel):
            self._cancel(input_id, ts, cmd)
        elif isinstance(cmd, Amend):
            self._amend(input_id, ts, cmd)
        elif isinstance(cmd, CancelAll):
            self._cancel_all(ts, cmd)
        else:
            assert isinstance(cmd, Clock)  # moves the clock: the expiries above
        self._run_triggered(ts)
        if self._touched:
            bids, asks = (dict(levels) for levels in self.book())
            self.seq += 1
            self.events.append(BookUpdate(
                self.seq, ts,
                tuple((p, bids.get(p, 0)) for s, p in sorted(self._touched, key=lambda k: -k[1])
                      if s == "buy"),
                tuple((p, asks.get(p, 0)) for s, p in sorted(self._touched) if s == "sell")))
        return self.events

    def _report(self, ts: int, o: RefOrder, exec_type: ExecType, status: Status,
                reason: str | None = None) -> None:
        terminal = status not in ("new", "partially_filled", "untriggered")
        self.seq += 1
        self.events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type, o.tif,
            o.price, o.qty, exec_type, status, 0, 0, o.cum_qty, 0 if terminal else o.leaves,
            o.cum_notional, None, None, reason, 0, o.stop_price, o.expire_time, o.display_qty,
        ))

    def _fill_report(self, ts: int, o: RefOrder, qty: int, price: int,
                     liquidity: Liquidity, fee: int, status: Status | None = None) -> None:
        self.seq += 1
        if status is None:
            status = "filled" if o.leaves == 0 else "partially_filled"
        self.events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type, o.tif,
            o.price, o.qty, "trade", status, qty, price, o.cum_qty, o.leaves, o.cum_notional,
            liquidity, self.trade_id, None, fee, o.stop_price, o.expire_time, o.display_qty,
        ))

    def _trade(self, ts: int, price: int, qty: int, taker: RefOrder, maker: RefOrder) -> None:
        """Print a trade; it is the market's last price and is examined for stops later."""
        self.seq += 1
        self.events.append(Trade(self.seq, ts, self.trade_id, price, qty, taker.side,
                                 maker.order_id, taker.order_id))
        self.last_price = price
        self._prints.append((price, self._executing_stop))

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

    def _crossing(self, side: Side, type_: str, price: int) -> list[RefOrder]:
        """Opposite resting orders a taker could reach, in the order it would reach them."""
        opposite = self.side_queue("sell" if side == "buy" else "buy")
        if type_ in MARKET_TYPES:
            return opposite
        if side == "buy":
            return [m for m in opposite if m.price <= price]
        return [m for m in opposite if m.price >= price]

    def _in_band(self, ticks: int) -> bool:
        return self.market.min_ticks <= ticks <= self.market.max_ticks

    def _place_error(self, input_id: str, ts: int, cmd: Place) -> str | None:
        """Why ``cmd`` is rejected (the first rule it breaks), or None."""
        market = self.market
        stop = cmd.type in STOP_TYPES
        if cmd.quote_qty != 0:
            if not (cmd.type in MARKET_TYPES and cmd.side == "buy" and cmd.qty == 0
                    and cmd.quote_qty > 0 and cmd.tif != "FOK"):
                return "BAD_REQUEST"
        elif not market.min_lots <= cmd.qty <= market.max_lots:
            return "INVALID_QTY"
        if cmd.type in LIMIT_TYPES and not self._in_band(cmd.price):
            return "INVALID_PRICE"
        if stop and not self._in_band(cmd.stop_price):
            return "INVALID_STOP_PRICE"
        if not stop and cmd.stop_price != 0:
            return "BAD_REQUEST"
        if cmd.tif == "GTD":
            if cmd.expire_time <= 0:
                return "INVALID_EXPIRE_TIME"
            if cmd.type == "market":
                return "BAD_REQUEST"
        elif cmd.expire_time != 0:
            return "INVALID_EXPIRE_TIME"
        if cmd.display_qty != 0:
            if cmd.display_qty < 0 or cmd.display_qty > cmd.qty:
                return "INVALID_QTY"
            if cmd.type in MARKET_TYPES or cmd.tif in ("IOC", "FOK"):
                return "BAD_REQUEST"
        if cmd.post_only and stop:
            return "BAD_REQUEST"
        open_orders = self.resting + self.untriggered
        if any(o.order_id == input_id for o in open_orders):
            return "BAD_REQUEST"  # an input entry can only be one order
        if cmd.client_order_id is not None and any(
                o.account == cmd.account and o.client_order_id == cmd.client_order_id
                for o in open_orders):
            return "DUPLICATE_CLIENT_ORDER_ID"
        if cmd.post_only and (cmd.type not in LIMIT_TYPES
                              or self._crossing(cmd.side, cmd.type, cmd.price)):
            return "POST_ONLY_WOULD_TAKE"
        if cmd.tif == "GTD" and cmd.expire_time <= ts:
            return "EXPIRED"
        return None

    def _place(self, input_id: str, ts: int, cmd: Place) -> None:
        if cmd.invalid_field() is not None:
            self.seq += 1
            self.events.append(InputRejected(self.seq, ts, input_id, "BAD_REQUEST"))
            return
        o = RefOrder(input_id, cmd.account, cmd.client_order_id, cmd.side, cmd.type,
                     report_tif(cmd.type, cmd.tif),  # type: ignore[arg-type]
                     cmd.price if cmd.type in LIMIT_TYPES else 0, cmd.qty, cmd.post_only,
                     cmd.stp, quote_qty=cmd.quote_qty, stop_price=cmd.stop_price,
                     expire_time=cmd.expire_time, display_qty=cmd.display_qty)
        reason = self._place_error(input_id, ts, cmd)
        if reason is not None:
            self._report(ts, o, "rejected", "rejected", reason)
            return
        if o.type in STOP_TYPES:
            self._report(ts, o, "new", "untriggered")
            self._hold_stop(o)
            return
        self._report(ts, o, "new", "new")
        self._enter(ts, o)

    def _hold_stop(self, o: RefOrder) -> None:
        """Keep an accepted (or re-prioritized) stop off-book, at the back of the trigger
        order; one the last trade price already meets triggers at once."""
        self.prio += 1
        o.prio = self.prio
        if o in self.untriggered:
            self.untriggered.remove(o)
        self.untriggered.append(o)
        self._trigger_if_met(o)

    def _trigger_if_met(self, o: RefOrder) -> None:
        """Trigger an untriggered stop the last trade price already meets (executed by
        :meth:`_run_triggered`, before any stop the command's own prints trigger)."""
        if o.triggered_by(self.last_price):
            self.untriggered.remove(o)
            self._queued.insert(0, o)  # the first to execute: nothing printed yet
            self.tally["triggered at once"] += 1

    def _run_triggered(self, ts: int) -> None:
        """Breadth first: queue the stops every unexamined print triggers (in priority order
        per print), then execute the first queued stop; until none is left."""
        while True:
            while self._examined < len(self._prints):
                price, by_stop = self._prints[self._examined]
                self._examined += 1
                for s in [s for s in self.untriggered if s.triggered_by(price)]:
                    self.untriggered.remove(s)
                    self._queued.append(s)
                    if by_stop:
                        self.tally["cascade"] += 1
            if not self._queued:
                return
            s = self._queued.pop(0)
            self._report(ts, s, "triggered", "new")
            self._executing_stop = True
            self._enter(ts, s)
            self._executing_stop = False

    def _enter(self, ts: int, o: RefOrder) -> None:
        """Handle ``o`` as a freshly placed limit or market order, its "new" report sent."""
        if o.quote_qty:
            self._take_budget(ts, o)
        else:
            self._take(ts, o)

    def _rest(self, o: RefOrder) -> None:
        """Put ``o`` at the back of its level with the next priority (an iceberg: a full
        slice)."""
        self.prio += 1
        o.prio = self.prio
        if o.display_qty:
            o.visible = min(o.display_qty, o.leaves)
        self.resting.append(o)
        self._touched.add((o.side, o.price))

    def _unrest(self, o: RefOrder) -> None:
        """Take ``o`` out of the book (its level is touched)."""
        self.resting.remove(o)
        self._touched.add((o.side, o.price))

    def _fill_maker(self, maker: RefOrder, qty: int, price: int) -> None:
        """Book ``qty`` lots of ``maker`` filled: gone when done; an iceberg whose slice is
        used up shows its next slice at the back of the level."""
        maker.cum_qty += qty
        maker.cum_notional += qty * price
        self._touched.add((maker.side, price))
        if maker.display_qty:
            maker.visible -= qty
        if maker.leaves == 0:
            self._unrest(maker)
        elif maker.display_qty and maker.visible == 0:
            self._unrest(maker)
            self._rest(maker)
            self.tally["iceberg refill"] += 1

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
                self._unrest(maker)
                self._report(ts, maker, "canceled", "canceled", "STP")
                if o.stp == "cancel_both":
                    reason = "STP"
                    break
                continue
            price = maker.price
            qty = 0
            while qty < maker.shown and self._cost(o, price, qty + 1) <= left:
                qty += 1
            if qty == 0:
                break  # the budget cannot pay for one more lot here
            notional = self.market.notional(price, qty)
            self.trade_id += 1
            self._fill_maker(maker, qty, price)
            o.cum_qty += qty
            o.qty = o.cum_qty
            o.cum_notional += qty * price
            maker_fee = self._charge(maker, notional, "maker")
            taker_fee = self._charge(o, notional, "taker")
            left -= notional + taker_fee
            filled = self._cost(o, price, 1) > left
            self._trade(ts, price, qty, o, maker)
            self._fill_report(ts, maker, qty, price, "maker", maker_fee)
            self._fill_report(ts, o, qty, price, "taker", taker_fee,
                              "filled" if filled else "partially_filled")
            if filled:
                reason = None
                break
        if reason is not None:
            self._report(ts, o, "expired", "expired", reason)

    def _fills_whole(self, o: RefOrder) -> bool:
        """Whether matching ``o`` now would fill all of it: a trial run as IOC on copies of
        the resting orders (icebergs refill and requeue there, STP stops it where it would)."""
        trial = ReferenceMatcher(self.market, prio=self.prio,
                                 resting=[dataclasses.replace(m) for m in self.resting])
        taker = dataclasses.replace(o, tif="IOC")
        trial._take(0, taker)
        return taker.leaves == 0

    def _take(self, ts: int, o: RefOrder) -> None:
        """Match ``o`` as taker, then rest (GTC/GTD limit) or expire its remainder."""
        if o.tif == "FOK" and not self._fills_whole(o):
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
                self._unrest(maker)
                self._report(ts, maker, "canceled", "canceled", "STP")
                if o.stp == "cancel_both":
                    stopped_by_stp = True
                    break
                continue
            qty = min(maker.shown, o.leaves)
            price = maker.price
            self.trade_id += 1
            self._fill_maker(maker, qty, price)
            o.cum_qty += qty
            o.cum_notional += qty * price
            notional = self.market.notional(price, qty)
            maker_fee = self._charge(maker, notional, "maker")
            taker_fee = self._charge(o, notional, "taker")
            self._trade(ts, price, qty, o, maker)
            self._fill_report(ts, maker, qty, price, "maker", maker_fee)
            self._fill_report(ts, o, qty, price, "taker", taker_fee)
        if o.leaves == 0:
            return
        if stopped_by_stp:
            self._report(ts, o, "expired", "expired", "STP")
        elif o.type in LIMIT_TYPES and o.tif in ("GTC", "GTD"):
            self._rest(o)
        else:
            self._report(ts, o, "expired", "expired",
                         "NO_LIQUIDITY" if o.type in MARKET_TYPES else None)

    def _expire_due(self, ts: int) -> None:
        """Expire every open GTD order whose ``expire_time`` the clock reached, earliest
        first (priority order among equal times)."""
        due = [o for o in self.resting + self.untriggered
               if o.tif == "GTD" and o.expire_time <= ts]
        for o in sorted(due, key=lambda o: (o.expire_time, o.prio)):
            self._remove(o)
            self._report(ts, o, "expired", "expired", "EXPIRED")
            self.tally["GTD expired"] += 1

    def _remove(self, o: RefOrder) -> None:
        if o in self.untriggered:
            self.untriggered.remove(o)
        else:
            self._unrest(o)

    def _find(self, account: str, order_id: str | None,
              client_order_id: str | None) -> RefOrder | None:
        for o in self.resting + self.untriggered:
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
        self._remove(o)
        self._report(ts, o, "canceled", "canceled", "USER_CANCEL")

    def _amend_error(self, o: RefOrder | None, cmd: Amend) -> str | None:
        """Why ``cmd`` is rejected (the first rule it breaks), or None."""
        if o is None:
            return "UNKNOWN_ORDER"
        if cmd.qty is None and cmd.price is None and cmd.stop_price is None:
            return "BAD_REQUEST"
        if cmd.stop_price is not None and o not in self.untriggered:
            return "BAD_REQUEST"
        if cmd.price is not None and o.type in MARKET_TYPES:
            return "BAD_REQUEST"
        if cmd.qty is not None and o.quote_qty:
            return "BAD_REQUEST"
        if cmd.qty is not None and (cmd.qty <= o.cum_qty or not (
                self.market.min_lots <= cmd.qty <= self.market.max_lots)):
            return "INVALID_QTY"
        if cmd.price is not None and not self._in_band(cmd.price):
            return "INVALID_PRICE"
        if cmd.stop_price is not None and not self._in_band(cmd.stop_price):
            return "INVALID_STOP_PRICE"
        if o.post_only and cmd.price is not None and cmd.price != o.price and \
                self._crossing(o.side, "limit", cmd.price):
            return "POST_ONLY_WOULD_TAKE"
        return None

    def _amend(self, input_id: str, ts: int, cmd: Amend) -> None:
        o = self._find(cmd.account, cmd.order_id, cmd.client_order_id)
        reason = self._amend_error(o, cmd)
        if o is None or reason is not None:
            self._reject(ts, input_id, cmd.account, cmd.order_id, cmd.client_order_id,
                         reason or "UNKNOWN_ORDER")
            return
        new_qty = o.qty if cmd.qty is None else cmd.qty
        new_price = o.price if cmd.price is None else cmd.price
        if o in self.untriggered:
            new_stop = o.stop_price if cmd.stop_price is None else cmd.stop_price
            loses_place = new_stop != o.stop_price or new_qty > o.qty
            o.qty, o.price, o.stop_price = new_qty, new_price, new_stop
            self._report(ts, o, "replaced", "untriggered")
            if loses_place:
                self._hold_stop(o)
            else:
                self._trigger_if_met(o)
            return
        if new_price == o.price and new_qty <= o.qty:
            changed = new_qty != o.qty
            o.qty = new_qty  # keeps its place in the queue
            if o.display_qty:
                # Only a smaller shown slice changes the book; a smaller hidden part does not.
                if min(o.visible, o.leaves) != o.visible:
                    o.visible = min(o.visible, o.leaves)
                    self._touched.add((o.side, o.price))
            elif changed:
                self._touched.add((o.side, o.price))
            self._report(ts, o, "replaced", o.open_status)
            return
        self._unrest(o)
        o.qty = new_qty
        o.price = new_price
        self._report(ts, o, "replaced", o.open_status)
        self._take(ts, o)

    def _cancel_all(self, ts: int, cmd: CancelAll) -> None:
        victims = [o for o in self.open() if o.account == cmd.account
                   and (cmd.order_ids is None or o.order_id in cmd.order_ids)]
        for o in victims:
            self._remove(o)
            self._report(ts, o, "canceled", "canceled", cmd.reason)


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
# Section B: stops inside the traded range (they trigger often, and cascade), rarely out
# of the band; GTD lives from 1 ms to seconds (0 and below: expired on arrival).
STOP_ORDER_TYPES: tuple[OrderType, ...] = ("stop_limit", "stop_market", "take_profit_limit",
                                          "take_profit_market")
STOP_PRICES = (*range(99, 104), *range(99, 104), *range(100, 103), 98, 104, 97, 105)
STOP_LIMIT_TIFS: tuple[Tif, ...] = ("GTC", "GTC", "GTD", "GTD", "IOC", "FOK")
STOP_MARKET_TIFS: tuple[Tif, ...] = ("GTC", "IOC", "GTD", "FOK")
EXPIRY_OFFSETS = (1, 1, 2, 3, 5, 8, 13, 21, 50, 200, 1_000, 3_000, 0, -4)


def expire_time_after(rng: random.Random, clock: int) -> int:
    """A GTD ``expire_time`` a few ms to seconds after ``clock``; rarely not after it, or 0."""
    if rng.random() < 0.01:
        return 0  # INVALID_EXPIRE_TIME
    return clock + rng.choice(EXPIRY_OFFSETS)


def display_qty_for(rng: random.Random, qty: int) -> int:
    """An iceberg's shown slice: mostly below ``qty``, at times all of it, rarely invalid."""
    roll = rng.random()
    if roll < 0.03:
        return qty + 1  # INVALID_QTY
    if roll < 0.15 or qty <= 1:
        return max(qty, 1)
    return rng.randint(1, qty - 1)


@dataclass
class Workload:
    """Random commands over a few accounts, aimed at open orders most of the time.

    ``next(open_orders)`` takes ``(order_id, account, client_order_id)`` of the orders now
    open (from the reference) so that cancels and amends mostly hit them;
    the rest target orders that are gone, never existed or belong to others.
    ``all_order_types``: stops and take-profits of the four types, GTD orders, icebergs,
    amends of ``stop_price`` and the engine's ``Clock`` entries too; False: only limit
    and market orders.
    """

    rng: random.Random
    market: Market = WORKLOAD_MARKET  # budgets are scaled to its quote unit
    all_order_types: bool = True
    ms: int = 1_700_000_000_000
    n: int = 0
    issued: list[tuple[str, str, str | None]] = field(default_factory=list)
    expiries: list[int] = field(default_factory=list)  # GTD expire times placed, not yet due

    def next_id(self) -> str:
        if self.rng.random() < 0.5:
            self.ms += self.rng.randint(1, 3)
            self.n = 0
        else:
            self.n += 1
        return f"{self.ms}-{self.n}"

    def next(self, open_orders: list[tuple[str, str, str | None]]) -> tuple[str, Command]:
        """The next ``(input_id, command)``; records placements for later targeting."""
        if self.all_order_types and self.rng.random() < 0.03:
            return self.clock_id(), Clock()
        input_id = self.next_id()
        cmd = self.command(open_orders)
        if isinstance(cmd, Place):
            self.issued.append((input_id, cmd.account, cmd.client_order_id))
            if cmd.tif == "GTD" and cmd.expire_time > self.ms:
                self.expiries.append(cmd.expire_time)
        return input_id, cmd

    def clock_id(self) -> str:
        """The id of a clock entry as the engine writes one: the next GTD expiry due
        (most of the time), else a quiet while later."""
        self.expiries = [t for t in self.expiries if t > self.ms]
        if self.expiries and self.rng.random() < 0.8:
            self.ms = min(self.expiries)
        else:
            self.ms += self.rng.randint(1, 50)
        self.n = 0
        return f"{self.ms}-0"

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
            stop_price = None
            if self.all_order_types and rng.random() < 0.3:
                stop_price = rng.choice(STOP_PRICES)
            if qty is None and price is None and stop_price is None and rng.random() < 0.9:
                qty = rng.choice(QTYS)
            return Amend(account, target, coid, qty, price, stop_price)
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
        if self.all_order_types and rng.random() < 0.2:
            return self._stop_place(account)
        side = rng.choice(SIDES)
        type_: OrderType = "market" if rng.random() < 0.08 else "limit"
        price = rng.choice(BUY_PRICES if side == "buy" else SELL_PRICES)
        qty = rng.choice(QTYS)
        tif = rng.choice(TIFS)
        expire_time = display_qty = stop_price = 0
        if self.all_order_types:
            if type_ == "limit" and rng.random() < 0.2:
                tif = "GTD"
            if tif == "GTD" or rng.random() < 0.005:
                expire_time = expire_time_after(rng, self.ms)
            rests = type_ == "limit" and tif in ("GTC", "GTD")
            if rng.random() < (0.2 if rests else 0.01):
                display_qty = display_qty_for(rng, qty)
            if rng.random() < 0.005:
                stop_price = rng.choice(STOP_PRICES)  # BAD_REQUEST: not a stop type
        return Place(account, side, type_, qty, price if type_ == "limit" else 0, tif,
                     rng.random() < 0.1, rng.choice(CLIENT_IDS), rng.choice(STP_MODES),
                     0, stop_price, expire_time, display_qty)

    def _stop_place(self, account: str) -> Place:
        """A stop or take-profit of any type: a stop price in the traded range and a limit
        near it; market buys by budget at times; rarely post-only (BAD_REQUEST)."""
        rng = self.rng
        side = rng.choice(SIDES)
        type_ = rng.choice(STOP_ORDER_TYPES)
        stop_price = rng.choice(STOP_PRICES)
        qty, price, quote_qty, display_qty = rng.choice(QTYS), 0, 0, 0
        if type_ in LIMIT_TYPES:
            tif = rng.choice(STOP_LIMIT_TIFS)
            if rng.random() < 0.5:
                price = stop_price + rng.choice((-1, 0, 1, 2)) * (1 if side == "buy" else -1)
            else:
                price = rng.choice(BUY_PRICES if side == "buy" else SELL_PRICES)
            if tif in ("GTC", "GTD") and rng.random() < 0.2:
                display_qty = display_qty_for(rng, qty)
        else:
            tif = rng.choice(STOP_MARKET_TIFS)
            if side == "buy" and tif != "FOK" and rng.random() < 0.25:
                qty, quote_qty = 0, self.budget()
        expire_time = expire_time_after(rng, self.ms) if tif == "GTD" else 0
        return Place(account, side, type_, qty, price, tif, rng.random() < 0.02,
                     rng.choice(CLIENT_IDS), rng.choice(STP_MODES), quote_qty, stop_price,
                     expire_time, display_qty)

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

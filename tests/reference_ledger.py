"""A deliberately simple reference of the risk stage's balances and holds.

:class:`ReferenceLedger` is written straight from PROTOCOL.md section A and
the hold rules of ``ledger.core`` with plain data: fees are exact
``Fraction`` sums rounded up per order, an account's ``held`` is the sum of its
orders' holds (never stored), an amend's worst case is found by trying every
split of fills before and after it, and pending amends are one list in the
order they were forwarded. It must never import ``ledger``.

Section B (stops, take-profits, GTD, icebergs): an order holds what the order
it *becomes* may cost (:data:`BECOMES`: a ``*_limit`` stop is a limit order, a
``*_market`` one a market order), from its acceptance until its last report,
whether it is still waiting for its trigger or not; ``tif`` and
``display_qty`` change nothing about holds (a GTD order is released by its
``expired`` report, an iceberg holds its whole quantity). Every fill is paid
out of the order's hold: :meth:`ReferenceLedger.settle` asserts that the hold
covers it, so a triggered stop can never be short of funds.

Cost: O(orders) per command or report (tests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import ceil

from contract.commands import Amend, Cancel, CancelAll, Command, Place
from contract.events import CancelRejected, Report
from contract.market import Market

BECOMES = {"limit": "limit", "stop_limit": "limit", "take_profit_limit": "limit",
           "market": "market", "stop_market": "market", "take_profit_market": "market"}
"""Every order type -> the plain order it is once triggered (PROTOCOL.md section B)."""


def fee_of(exact_before: Fraction, notional: int, rate: Fraction) -> tuple[int, Fraction]:
    """One fill's fee: what brings the order's total fee to ``ceil(exact total)``."""
    after = exact_before + notional * rate
    return ceil(after) - ceil(exact_before), after


# -- the reference ledger ---------------------------------------------------------------------


@dataclass
class RefHold:
    order_id: str
    account: str
    client_order_id: str | None
    side: str
    type: str  # as placed; BECOMES[type] is what its holds follow
    asset: str
    hold: int
    price: int
    qty: int
    cum_qty: int = 0
    fee_exact: Fraction = Fraction(0)
    configs: list[tuple[int, int]] = field(default_factory=list)
    """Every (price, qty) the order may have while amends are pending."""


@dataclass
class ReferenceLedger:
    """Balances and holds of one shard over one market; see the module docstring."""

    market: Market
    fee_account: str = "fees"
    available: dict[tuple[str, str], int] = field(default_factory=dict)
    orders: dict[str, RefHold] = field(default_factory=dict)
    refs: set[tuple[str, str]] = field(default_factory=set)  # (account, ref)
    pending: list[tuple[str, set[str]]] = field(default_factory=list)  # forward order
    taker_rate: Fraction = field(init=False)
    maker_rate: Fraction = field(init=False)

    def __post_init__(self) -> None:
        self.taker_rate = Fraction(self.market.taker_fee)
        self.maker_rate = Fraction(self.market.maker_fee)

    # -- views ------------------------------------------------------------------------

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        held = sum(o.hold for o in self.orders.values()
                   if o.account == account and o.asset == asset)
        return self.available.get((account, asset), 0), held

    def keys(self) -> set[tuple[str, str]]:
        return set(self.available) | {(o.account, o.asset) for o in self.orders.values()}

    def _add(self, account: str, asset: str, amount: int) -> None:
        self.available[(account, asset)] = self.available.get((account, asset), 0) + amount

    def _is_pending(self, order_id: str) -> bool:
        return any(order_id in ids for _, ids in self.pending)

    def cost(self, o: RefHold, price: int, lots: int) -> int:
        """Most that ``lots`` more at up to ``price`` cost, fees at the taker rate included."""
        if lots <= 0:
            return 0
        notional = self.market.notional(price, lots)
        return notional + fee_of(o.fee_exact, notional, self.taker_rate)[0]

    def required(self, o: RefHold) -> int:
        if o.side == "sell":
            return self.market.base_amount(o.qty - o.cum_qty)
        if BECOMES[o.type] == "market":
            return o.hold  # a budget: never more than what is left of it is spent
        return self.cost(o, o.price, o.qty - o.cum_qty)

    # -- commands: each returns the outcome the ledger must give --------------------------

    def transfer(self, deposit: bool, account: str, asset: str, amount: int, ref: str) -> str:
        if amount <= 0:
            return "rejected BAD_REQUEST"
        if (account, ref) in self.refs:
            return "duplicate"
        if not deposit and self.available.get((account, asset), 0) < amount:
            return "rejected INSUFFICIENT_FUNDS"
        self.refs.add((account, ref))
        self._add(account, asset, amount if deposit else -amount)
        return "applied"

    def place(self, order_id: str, cmd: Place) -> str:
        """An order of any type that the ledger checks as valid (the market may still
        reject it: its ``rejected`` report releases the hold)."""
        m = self.market
        limit = BECOMES[cmd.type] == "limit"
        if cmd.side == "buy":
            asset = m.quote
            hold = cmd.quote_qty if not limit else (
                m.notional(cmd.price, cmd.qty)
                + ceil(m.notional(cmd.price, cmd.qty) * self.taker_rate))
        else:
            asset, hold = m.base, m.base_amount(cmd.qty)
        if self.available.get((cmd.account, asset), 0) < hold:
            return "INSUFFICIENT_FUNDS"
        self._add(cmd.account, asset, -hold)
        price = cmd.price if limit else 0
        self.orders[order_id] = RefHold(order_id, cmd.account, cmd.client_order_id, cmd.side,
                                        cmd.type, asset, hold, price, cmd.qty,
                                        configs=[(price, cmd.qty)])
        return "forwarded"

    def amend(self, request_id: str, cmd: Amend) -> str:
        m = self.market
        if cmd.order_id is not None:
            candidates = [o for o in self.orders.values() if o.order_id == cmd.order_id
                          and o.account == cmd.account and cmd.client_order_id in
                          (None, o.client_order_id)]
        else:
            candidates = [o for o in self.orders.values() if cmd.client_order_id is not None
                          and (o.account, o.client_order_id) == (cmd.account,
                                                                 cmd.client_order_id)]
        # Whatever may rest (limit orders, stops of every type): a market order never does.
        candidates = [o for o in candidates if o.type != "market"]
        if (not candidates or (cmd.qty is None and cmd.price is None and cmd.stop_price is None)
                or (cmd.qty is not None and not m.min_lots <= cmd.qty <= m.max_lots)
                or (cmd.price is not None and not m.min_ticks <= cmd.price <= m.max_ticks)
                or (cmd.stop_price is not None
                    and not m.min_ticks <= cmd.stop_price <= m.max_ticks)):
            return "forwarded"
        increases = []
        for o in candidates:
            top_price = max(p for p, _ in o.configs)
            top_qty = max(q for _, q in o.configs)
            new_price = top_price if cmd.price is None else cmd.price
            new_qty = top_qty if cmd.qty is None else cmd.qty
            if o.side == "sell":
                worst = m.base_amount(max(top_qty, new_qty) - o.cum_qty)
            elif BECOMES[o.type] == "market":
                worst = o.hold  # a budget: no amend changes it (the market refuses qty)
            else:
                # x more fill at up to the old prices before the amend applies, the rest
                # (new_qty in all) at up to the new price: try every x.
                worst = 0
                for x in range(0, min(top_qty, new_qty) - o.cum_qty + 1):
                    notional = (m.notional(top_price, x)
                                + m.notional(new_price, new_qty - o.cum_qty - x))
                    if new_qty - o.cum_qty - x >= 0:
                        worst = max(worst, notional + fee_of(
                            o.fee_exact, notional, self.taker_rate)[0])
            increases.append((o, max(0, worst - o.hold), (new_price, new_qty)))
        need: dict[str, int] = {}
        for o, inc, _ in increases:
            need[o.asset] = need.get(o.asset, 0) + inc
        if any(self.available.get((cmd.account, a), 0) < n for a, n in need.items()):
            return "INSUFFICIENT_FUNDS"
        for o, inc, config in increases:
            self._add(o.account, o.asset, -inc)
            o.hold += inc
            o.configs.append(config)
        self.pending.append((request_id, {o.order_id for o in candidates}))
        return "forwarded"

    def forwards(self, cmd: Command) -> str:
        assert isinstance(cmd, Cancel | CancelAll)
        return "forwarded"

    # -- settlement -------------------------------------------------------------------

    def settle(self, events: list[Report | CancelRejected]) -> None:
        m = self.market
        for e in events:
            if isinstance(e, CancelRejected):
                self._answered([i for i, (rid, _) in enumerate(self.pending)
                                if rid == e.request_id])
                continue
            o = self.orders.get(e.order_id)
            if o is None:
                continue
            if e.exec_type == "trade":
                notional = m.notional(e.last_price, e.last_qty)
                rate = self.maker_rate if e.liquidity == "maker" else self.taker_rate
                fee, o.fee_exact = fee_of(o.fee_exact, notional, rate)
                assert fee == e.fee, "the market charged another fee"
                cost = notional + fee if o.side == "buy" else m.base_amount(e.last_qty)
                assert cost <= o.hold, f"a fill of {o.order_id} ({o.type}) beyond its hold"
                if o.side == "buy":
                    o.hold -= notional + fee
                    self._add(o.account, m.base, m.base_amount(e.last_qty))
                else:
                    o.hold -= m.base_amount(e.last_qty)
                    self._add(o.account, m.quote, notional - fee)
                if fee:
                    self._add(self.fee_account, m.quote, fee)
            o.price, o.qty, o.cum_qty = e.price, e.qty, e.cum_qty
            if e.exec_type == "replaced":
                self._answered([i for i, (_, ids) in enumerate(self.pending)
                                if o.order_id in ids][:1])
            if e.status in ("filled", "canceled", "expired", "rejected"):
                self._add(o.account, o.asset, o.hold)
                del self.orders[o.order_id]
                for _, ids in self.pending:
                    ids.discard(o.order_id)
                self.pending = [(rid, ids) for rid, ids in self.pending if ids]
            self._trim_all()

    def _answered(self, indexes: list[int]) -> None:
        for i in reversed(indexes):
            del self.pending[i]
        self._trim_all()

    def _trim_all(self) -> None:
        for o in self.orders.values():
            if not self._is_pending(o.order_id):
                o.configs = [(o.price, o.qty)]
                excess = o.hold - self.required(o)
                if excess > 0:
                    o.hold -= excess
                    self._add(o.account, o.asset, excess)

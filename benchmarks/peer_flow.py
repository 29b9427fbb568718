"""A flow every pure-Python order book can replay: limit places, cancels, modifies.

``benchmarks.flow.realistic_flow`` (without section B's order types) restricted
to what ``lightmatchingengine`` and ``pyorderbook`` support, message by message:

* a GTC limit place stays a limit place;
* an IOC limit place becomes a limit place, followed by a cancel of its rest
  when some of it rests; a market order becomes a limit place at the market's
  price bound (``max_ticks`` for a buy, ``min_ticks`` for a sell) followed by
  the same cancel: the same fills, and the same book afterwards;
* a cancel of an open order stays a cancel; a cancel of an order no longer open
  is dropped (lightmatchingengine asserts on a filled order's cancel,
  pyorderbook raises);
* an amend of an open order becomes a *modify*: a cancel, then a new limit order
  (its own id: the amend's entry id) at the new price with the new open
  quantity (the amend's total quantity minus what had filled, at least 1 lot).
  It always loses time priority. Later messages naming the old order name the
  new one.

Every order is one account's with self-trade prevention off (the peers have no
accounts). Which orders are open is decided by a real ``OrderBook`` replaying
the converted flow, so every cancel and modify targets an open order.
Deterministic for a given seed. Cost: O(n) plus two passes of the matching core
(generation is not part of any measurement).
"""

from __future__ import annotations

from contract.commands import Amend, Cancel, Place
from contract.market import DEFAULT_MARKETS, Market
from matching.book import Order, OrderBook

PLACE, CANCEL, MODIFY = 0, 1, 2
"""The kinds of op."""

Op = tuple[int, str, str, str, int, int]
"""``(kind, entry_id, target, side, price, qty)``. ``PLACE``: a limit order whose id is
``entry_id`` (``target`` == ``entry_id``). ``CANCEL``: cancel order ``target`` (side,
price and qty unused: "", 0, 0). ``MODIFY``: cancel ``target``, then place the limit
order ``entry_id`` at ``side``/``price`` for ``qty``. Prices in ticks, quantities in
lots, sides ``"buy"``/``"sell"``."""

ACCOUNT = "peer"
"""The one account of every order, on the streamex side."""


class FlowBuilder:
    """Appends ops to ``ops``, checked against a real ``OrderBook`` replaying them.

    ``place`` always appends; ``cancel`` and ``modify`` append only when their target
    (an order id, or an id a modify has replaced) is open, and return whether they did.
    """

    def __init__(self, market: Market = DEFAULT_MARKETS[0]) -> None:
        self.market = market
        self.book = OrderBook(market)
        self.ops: list[Op] = []
        self.replaced: dict[str, str] = {}
        """An order id a modify replaced -> the id of the order that replaced it."""
        self.dropped = 0
        """Cancels and modifies whose target was not open."""

    def open_order(self, order_id: str) -> Order | None:
        """The open order ``order_id`` names (after any modifies), or None. O(1)."""
        return self.book.orders.get(self.replaced.get(order_id, order_id))

    def place(self, entry_id: str, side: str, price: int, qty: int) -> None:
        """A limit order ``entry_id``; ``price`` within the market's bounds, ``qty`` >= 1."""
        if not self.market.min_ticks <= price <= self.market.max_ticks or qty < 1:
            raise ValueError(f"price {price} or qty {qty} out of bounds")
        self.book.apply(entry_id, Place(ACCOUNT, side, "limit", qty, price,  # type: ignore[arg-type]
                                        stp="none"))
        self.ops.append((PLACE, entry_id, entry_id, side, price, qty))

    def cancel(self, entry_id: str, order_id: str) -> bool:
        """Cancel the open order ``order_id`` names; False (nothing appended) if none."""
        o = self.open_order(order_id)
        if o is None:
            self.dropped += 1
            return False
        self.book.apply(entry_id, Cancel(ACCOUNT, order_id=o.order_id))
        self.ops.append((CANCEL, entry_id, o.order_id, "", 0, 0))
        return True

    def modify(self, entry_id: str, order_id: str, qty: int, price: int | None = None) -> bool:
        """Replace the open order ``order_id`` names by order ``entry_id`` for ``qty`` lots
        (>= 1) at ``price`` (None: its price); False (nothing appended) if none is open."""
        o = self.open_order(order_id)
        if o is None:
            self.dropped += 1
            return False
        price = o.price if price is None else price
        if not self.market.min_ticks <= price <= self.market.max_ticks or qty < 1:
            raise ValueError(f"price {price} or qty {qty} out of bounds")
        self.book.apply(entry_id, Cancel(ACCOUNT, order_id=o.order_id))
        self.book.apply(entry_id, Place(ACCOUNT, o.side, "limit", qty, price,  # type: ignore[arg-type]
                                        stp="none"))
        self.ops.append((MODIFY, entry_id, o.order_id, o.side, price, qty))
        self.replaced[order_id] = entry_id
        self.replaced[o.order_id] = entry_id
        return True


def peer_flow(n: int, seed: int = 1, market: Market = DEFAULT_MARKETS[0]) -> FlowBuilder:
    """``realistic_flow(market, n, seed)`` converted as the module says; its ``ops``
    (about ``n`` of them: an IOC or market order that rests adds a cancel, a cancel or
    amend of an order no longer open is dropped) and counts."""
    from benchmarks.flow import realistic_flow

    b = FlowBuilder(market)
    for entry_id, cmd in realistic_flow(market, n, seed):
        t = type(cmd)
        if t is Place:
            assert isinstance(cmd, Place)
            at_market = cmd.type == "market"
            if at_market:
                price = market.max_ticks if cmd.side == "buy" else market.min_ticks
            else:
                price = cmd.price
            b.place(entry_id, cmd.side, price, cmd.qty)
            if (at_market or cmd.tif == "IOC") and entry_id in b.book.orders:
                b.cancel(entry_id, entry_id)
        elif t is Cancel:
            assert isinstance(cmd, Cancel) and cmd.order_id is not None
            b.cancel(entry_id, cmd.order_id)
        elif t is Amend:
            assert isinstance(cmd, Amend) and cmd.order_id is not None
            o = b.open_order(cmd.order_id)
            if o is None:
                b.dropped += 1
                continue
            qty = o.leaves if cmd.qty is None else max(1, cmd.qty - o.cum_qty)
            b.modify(entry_id, cmd.order_id, qty, cmd.price)
    return b

"""Snapshot and restore of a book's complete state as msgpack.

A snapshot holds every resting order in priority order, the counters
(``seq``, ``trade_id``, priority) and where the stream stood: the last input
entry applied and the last ``:out`` entry written. Restoring it and applying
the commands that followed gives byte-identical events to never having
stopped. Cost: O(number of resting orders) both ways.
"""

from __future__ import annotations

import msgspec

from engine.book import Level, Order, OrderBook
from engine.market import Market

SNAPSHOT_VERSION = 1


class RestingOrder(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One resting order (always a GTC limit order)."""

    order_id: str
    account: str
    client_order_id: str | None
    side: str
    price: int
    qty: int
    cum_qty: int
    cum_notional: int
    post_only: bool
    stp: str
    prio: int


class Snapshot(msgspec.Struct, array_like=True, frozen=True):
    """The whole state of one market's engine at ``last_input_id``.

    ``orders`` are bids best-first then asks best-first, each level in time
    priority. ``last_out_id`` is the ``:out`` entry holding event ``seq``.
    """

    version: int
    symbol: str
    last_input_id: str
    last_out_id: str
    seq: int
    trade_id: int
    prio: int
    orders: list[RestingOrder]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def take_snapshot(book: OrderBook, last_input_id: str = "0-0",
                  last_out_id: str = "0-0") -> Snapshot:
    """Capture ``book`` (no copy of the book is kept: encode before mutating it)."""
    orders = []
    for prices, levels in ((reversed(book.bid_prices), book.bids),
                           (iter(book.ask_prices), book.asks)):
        for price in prices:
            for o in levels[price].orders.values():
                orders.append(RestingOrder(o.order_id, o.account, o.client_order_id, o.side,
                                           o.price, o.qty, o.cum_qty, o.cum_notional,
                                           o.post_only, o.stp, o.prio))
    return Snapshot(SNAPSHOT_VERSION, book.symbol, last_input_id, last_out_id, book.seq,
                    book.trade_id, book.prio, orders)


def encode_snapshot(snap: Snapshot) -> bytes:
    return _encoder.encode(snap)


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode a snapshot; raises ``msgspec.DecodeError`` or ``ValueError`` if foreign."""
    snap = _decoder.decode(data)
    if snap.version != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {snap.version} is not {SNAPSHOT_VERSION}")
    return snap


def restore_book(market: Market, snap: Snapshot) -> OrderBook:
    """Rebuild the book a snapshot was taken of; then apply the entries after it."""
    if snap.symbol != market.symbol:
        raise ValueError(f"snapshot is for {snap.symbol}, not {market.symbol}")
    book = OrderBook(market)
    book.seq = snap.seq
    book.trade_id = snap.trade_id
    for r in snap.orders:
        o = Order(r.order_id, r.account, r.client_order_id, r.side, "limit", "GTC", r.price,
                  r.qty, r.cum_qty, r.qty - r.cum_qty, r.cum_notional, r.post_only, r.stp, r.prio)
        if o.side == "buy":
            levels, prices = book.bids, book.bid_prices
        else:
            levels, prices = book.asks, book.ask_prices
        level = levels.get(o.price)
        if level is None:
            level = levels[o.price] = Level(o.price)
            prices.add(o.price)
        level.orders[o.order_id] = o
        level.total += o.leaves
        book.orders[o.order_id] = o
        book.by_account.setdefault(o.account, {})[o.order_id] = o
        if o.client_order_id is not None:
            book.client_ids[(o.account, o.client_order_id)] = o
    book.prio = snap.prio
    book.best_bid_price = book.bid_prices[-1] if book.bid_prices else None
    book.best_ask_price = book.ask_prices[0] if book.ask_prices else None
    return book

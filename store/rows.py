"""Rows the history database's queries return (``store.queries``), as typed data.

Integers are the engine's units (ticks, lots, asset units; notionals are
``sum(ticks * lots)``) whatever the table stores; format them with the
market's arithmetic (``contract.market.Market``). Candles are
``candles.core.Candle``. No I/O.
"""

from __future__ import annotations

import msgspec


class OrderRow(msgspec.Struct, frozen=True, gc=False):
    """An order's latest state (Binance's order object comes from it).

    ``order_number`` is REST's integer ``orderId`` (``contract.ids.order_number``);
    ``created_ts`` the time of the order id (received), ``working_ts`` that of its
    first ``new`` report (None if it never rested or was rejected), ``updated_ts``
    that of its last report. ``fee`` is the total of its fills' fees, in quote
    units. ``quote_qty`` is a market buy's budget when known (None: the market's
    reports do not carry it). ``stop_price`` (ticks), ``expire_time`` (ms) and
    ``display_qty`` (lots) are a stop's trigger, a GTD order's end and an iceberg's
    shown slice (0 where the order has none); ``trigger_ts`` is the time of a stop's
    ``triggered`` report (None until then, and for every other order). ``status`` is
    ``untriggered`` for a stop waiting off-book (an open order).
    """

    symbol: str
    order_id: str
    order_number: int | None
    account: str
    client_order_id: str | None
    side: str
    type: str
    tif: str
    price: int
    qty: int
    quote_qty: int | None
    status: str
    cum_qty: int
    cum_notional: int
    fee: int
    reason: str | None
    created_ts: int
    working_ts: int | None
    updated_ts: int
    last_seq: int
    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0
    trigger_ts: int | None = None


class ExecutionRow(msgspec.Struct, frozen=True, gc=False):
    """One execution report (or cancel reject) as published; ``stream`` and ``seq`` name it.

    For a trade: ``trade_id``, ``last_price``/``last_qty``, ``liquidity`` and this
    fill's ``fee`` (quote units) are set. A cancel reject has ``exec_type``
    ``"cancel_rejected"``, no ``status``/``side`` and zero quantities.
    """

    stream: str
    seq: int
    symbol: str
    ts: int
    account: str
    order_id: str | None
    client_order_id: str | None
    exec_type: str
    status: str | None
    side: str | None
    price: int
    qty: int
    last_qty: int
    last_price: int
    cum_qty: int
    leaves_qty: int
    cum_notional: int
    liquidity: str | None
    trade_id: int | None
    fee: int
    reason: str | None


class TradeRow(msgspec.Struct, frozen=True, gc=False):
    """A public trade, at the maker's price."""

    symbol: str
    trade_id: int
    seq: int
    ts: int
    price: int
    qty: int
    taker_side: str
    maker_order_id: str
    taker_order_id: str


class BalanceRow(msgspec.Struct, frozen=True, gc=False):
    """An account's latest balance of one asset (asset units) and the time of its last
    change, summed over the risk shards that hold it (one, but for the fee account)."""

    account: str
    asset: str
    available: int
    held: int
    ts: int


class GapRow(msgspec.Struct, frozen=True, gc=False):
    """Events ``lost_from_seq..lost_to_seq`` of ``stream`` were trimmed before history read
    them: between entry ``after_id`` (the last one read) and ``first_id``."""

    stream: str
    after_id: str
    first_id: str
    lost_from_seq: int
    lost_to_seq: int
    noted_ts: int

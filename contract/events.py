"""Events out of a market engine: the ``sx:{SYM}:out`` contract.

One ``:out`` entry holds the events of one engine commit, in ``seq`` order
(``contract.streams``). Every event carries the market's contiguous event
``seq`` and the time ``ts`` (ms) of the input entry that caused it. Prices
are integer ticks and quantities integer lots. Encoder and decoder are built
once: use :func:`encode_events` and :func:`decode_events`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contract.commands import Message, OrderType, Side, Tif

ExecType = Literal["new", "trade", "canceled", "expired", "rejected", "replaced", "status",
                   "triggered"]
Status = Literal["new", "partially_filled", "filled", "canceled", "expired", "rejected",
                 "untriggered"]
Liquidity = Literal["maker", "taker"]


class Report(Message, tag="report", frozen=True):
    """An execution report for one order (``seq`` doubles as its exec id).

    ``price`` is 0 for market orders; ``cum_notional`` is ``sum(ticks * lots)``
    of the order's fills, from which the average price is derived exactly.
    ``last_qty``/``last_price`` are 0 and ``trade_id`` None unless ``exec_type``
    is ``"trade"``. ``fee`` is the quote units this fill cost the order (0 on
    non-trade reports; ``contract.market.Market.fee``: per order, cumulative,
    rounded up), always in the market's quote asset. ``stop_price``, ``expire_time``
    and ``display_qty`` are the order's (``contract.commands.Place``; 0 where not set).
    """

    seq: int
    ts: int
    account: str
    order_id: str
    client_order_id: str | None
    side: Side
    type: OrderType
    tif: Tif
    price: int
    qty: int
    exec_type: ExecType
    status: Status
    last_qty: int
    last_price: int
    cum_qty: int
    leaves_qty: int
    cum_notional: int
    liquidity: Liquidity | None
    trade_id: int | None
    reason: str | None
    fee: int = 0
    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0


class CancelRejected(Message, tag="cancel_rejected", frozen=True):
    """A cancel or amend that was not applied; the order (if any) is unchanged.

    ``order_id``/``client_order_id`` echo the request; ``request_id`` is the
    input entry id of the cancel or amend command.
    """

    seq: int
    ts: int
    account: str
    order_id: str | None
    client_order_id: str | None
    request_id: str
    reason: str


class Trade(Message, tag="trade", frozen=True):
    """A public trade, printed at the maker's price."""

    seq: int
    ts: int
    trade_id: int
    price: int
    qty: int
    taker_side: Side
    maker_order_id: str
    taker_order_id: str


class BookUpdate(Message, tag="book", frozen=True):
    """Absolute totals of every level the command changed; a total of 0 deletes it.

    bids best (highest) first, asks best (lowest) first. Tuples (arrays on the
    wire, as lists would be): once the collector has seen them it stops tracking
    them, so events kept alive in bulk cost it nothing.
    """

    seq: int
    ts: int
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]


class InputRejected(Message, tag="input_rejected", frozen=True):
    """An input entry that could not be decoded; acknowledged and otherwise ignored."""

    seq: int
    ts: int
    input_id: str
    reason: str


Event = Report | CancelRejected | Trade | BookUpdate | InputRejected

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[list[Event]] = msgspec.msgpack.Decoder(list[Event])


def encode_events(events: list[Event]) -> bytes:
    return _encoder.encode(events)


def decode_events(data: bytes) -> list[Event]:
    return _decoder.decode(data)

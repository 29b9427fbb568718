"""Commands into the engine and events out of it: the pipeline's contract.

Commands travel gateway -> ``sx:{SYM}:in`` and events engine ->
``sx:{SYM}:out``, both msgpack-encoded Structs (``array_like``: positional,
compact, fast). Prices are integer ticks and quantities integer lots; decimal
strings exist only at the websocket edges (see ``engine.market``).

Encoders and decoders are built once here; use :func:`encode_command`,
:func:`decode_command`, :func:`encode_events` and :func:`decode_events`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
Tif = Literal["GTC", "IOC", "FOK"]
StpMode = Literal["cancel_taker", "cancel_maker", "cancel_both", "none"]
ExecType = Literal["new", "trade", "canceled", "expired", "rejected", "replaced", "status"]
Status = Literal["new", "partially_filled", "filled", "canceled", "expired", "rejected"]
Liquidity = Literal["maker", "taker"]


class _Message(msgspec.Struct, tag_field="kind", array_like=True, frozen=True, gc=False):
    """Base of every command and event: positional msgpack arrays tagged by kind."""


# -- commands -----------------------------------------------------------------


class Place(_Message, tag="place", frozen=True):
    """Place a new order. Its order id is the input stream entry id."""

    account: str
    side: Side
    type: OrderType
    qty: int
    price: int = 0  # ticks; 0 (ignored) for market orders
    tif: Tif = "GTC"
    post_only: bool = False
    client_order_id: str | None = None
    stp: StpMode = "cancel_taker"


class Cancel(_Message, tag="cancel", frozen=True):
    """Cancel one of the account's open orders by ``order_id`` or ``client_order_id``."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None


class Amend(_Message, tag="amend", frozen=True):
    """Change an open order's total quantity and/or price (None = unchanged)."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None
    qty: int | None = None
    price: int | None = None


class CancelAll(_Message, tag="cancel_all", frozen=True):
    """Cancel the account's open orders in this market (only ``order_ids`` if given)."""

    account: str
    order_ids: list[str] | None = None
    reason: str = "USER_CANCEL"


Command = Place | Cancel | Amend | CancelAll

# -- events -------------------------------------------------------------------


class Report(_Message, tag="report", frozen=True):
    """An execution report for one order (``seq`` doubles as its exec id).

    ``price`` is 0 for market orders; ``cum_notional`` is ``sum(ticks * lots)``
    of the order's fills, from which the average price is derived exactly.
    ``last_qty``/``last_price`` are 0 and ``trade_id`` None unless ``exec_type``
    is ``"trade"``.
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


class CancelRejected(_Message, tag="cancel_rejected", frozen=True):
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


class Trade(_Message, tag="trade", frozen=True):
    """A public trade, printed at the maker's price."""

    seq: int
    ts: int
    trade_id: int
    price: int
    qty: int
    taker_side: Side
    maker_order_id: str
    taker_order_id: str


class BookUpdate(_Message, tag="book", frozen=True):
    """Absolute totals of every level the command changed; a total of 0 deletes it.

    bids best (highest) first, asks best (lowest) first.
    """

    seq: int
    ts: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class InputRejected(_Message, tag="input_rejected", frozen=True):
    """An input entry that could not be decoded; acknowledged and otherwise ignored."""

    seq: int
    ts: int
    input_id: str
    reason: str


Event = Report | CancelRejected | Trade | BookUpdate | InputRejected

_command_encoder = msgspec.msgpack.Encoder()
_command_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)
_events_encoder = msgspec.msgpack.Encoder()
_events_decoder: msgspec.msgpack.Decoder[list[Event]] = msgspec.msgpack.Decoder(list[Event])


def encode_command(cmd: Command) -> bytes:
    return _command_encoder.encode(cmd)


def decode_command(data: bytes) -> Command:
    """Decode one input entry; raises ``msgspec.DecodeError``/``ValidationError`` if bad."""
    return _command_decoder.decode(data)


def encode_events(events: list[Event]) -> bytes:
    return _events_encoder.encode(events)


def decode_events(data: bytes) -> list[Event]:
    return _events_decoder.decode(data)


def ts_of(entry_id: str) -> int:
    """Milliseconds part of a stream entry id ``"<ms>-<n>"``. O(len)."""
    return int(entry_id.partition("-")[0])

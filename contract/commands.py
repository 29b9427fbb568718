"""Commands into a market engine: the ``sx:{SYM}:in`` contract.

The gateway (and operator tools) XADD one command per input entry; the
engine decodes it and applies it to its book. Commands are msgpack-encoded
Structs (``array_like``: positional, compact, fast) tagged by ``kind``.
Prices are integer ticks and quantities integer lots; decimal strings exist
only at the websocket edges (see ``contract.market``).

Every enumerated field is a ``Literal``: the decoder refuses other values,
and a ``Place`` built in Python with one (``side="Buy"``) raises
``ValueError`` at once, so a wrong value is an error wherever the command
comes from. Encoder and decoder are built once: use :func:`encode_command`
and :func:`decode_command`.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from contract.errors import REASON_CODES

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
Tif = Literal["GTC", "IOC", "FOK"]
StpMode = Literal["cancel_taker", "cancel_maker", "cancel_both", "none"]

SIDES: tuple[str, ...] = get_args(Side)
ORDER_TYPES: tuple[str, ...] = get_args(OrderType)
TIFS: tuple[str, ...] = get_args(Tif)
STP_MODES: tuple[str, ...] = get_args(StpMode)


class Message(msgspec.Struct, tag_field="kind", array_like=True, frozen=True, gc=False):
    """Base of every command and event: positional msgpack arrays tagged by kind."""


class Place(Message, tag="place", frozen=True):
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

    def __post_init__(self) -> None:
        # ~50 ns; tuples, not sets: decoded values are the interned literals, so
        # each test is an identity hit.
        if (self.side not in SIDES or self.type not in ORDER_TYPES or self.tif not in TIFS
                or self.stp not in STP_MODES):
            raise ValueError(_bad_value(self))


class Cancel(Message, tag="cancel", frozen=True):
    """Cancel one of the account's open orders by ``order_id`` or ``client_order_id``."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None


class Amend(Message, tag="amend", frozen=True):
    """Change an open order's total quantity and/or price (None = unchanged)."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None
    qty: int | None = None
    price: int | None = None


class CancelAll(Message, tag="cancel_all", frozen=True):
    """Cancel the account's open orders in this market (only ``order_ids`` if given).

    ``reason`` is the reason code the ``canceled`` reports carry.
    """

    account: str
    order_ids: list[str] | None = None
    reason: str = "USER_CANCEL"

    def __post_init__(self) -> None:
        if self.reason not in REASON_CODES:
            raise ValueError(f"reason: {self.reason[:40]!r} is not a reason code")


Command = Place | Cancel | Amend | CancelAll


def _bad_value(place: Place) -> str:
    for name, allowed in (("side", SIDES), ("type", ORDER_TYPES), ("tif", TIFS),
                          ("stp", STP_MODES)):
        value = getattr(place, name)
        if value not in allowed:
            return f"{name}: {str(value)[:40]!r} is not one of {', '.join(allowed)}"
    return "invalid value"  # pragma: no cover - only called when a check failed


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


def encode_command(cmd: Command) -> bytes:
    return _encoder.encode(cmd)


def decode_command(data: bytes) -> Command:
    """Decode one input entry; raises ``msgspec.DecodeError``/``ValidationError`` if bad."""
    return _decoder.decode(data)

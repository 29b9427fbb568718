"""Commands into a market engine: the ``sx:{SYM}:in`` contract.

The gateway (and operator tools) XADD one command per input entry; the
engine decodes it and applies it to its book. Commands are msgpack-encoded
Structs (``array_like``: positional, compact, fast) tagged by ``kind``.
Prices are integer ticks and quantities integer lots; decimal strings exist
only at the websocket edges (see ``contract.market``).

Every enumerated field is a ``Literal``: the decoder refuses other values,
:func:`encode_command` refuses to write a ``Place`` built in Python with one
(``side="Buy"``), and the book rejects such a command (``BAD_REQUEST``), so
a wrong value is an error wherever the command comes from. Encoder and
decoder are built once: use :func:`encode_command` and the module's
:data:`decode_command` (the decoder's bound method: no Python frame on the
engine's hot path).
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from contract.errors import REASON_CODES

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop_limit", "stop_market", "take_profit_limit",
                    "take_profit_market"]
Tif = Literal["GTC", "IOC", "FOK", "GTD"]
StpMode = Literal["cancel_taker", "cancel_maker", "cancel_both", "none"]

SIDES: tuple[str, ...] = get_args(Side)
ORDER_TYPES: tuple[str, ...] = get_args(OrderType)
TIFS: tuple[str, ...] = get_args(Tif)
STP_MODES: tuple[str, ...] = get_args(StpMode)

STOP_TYPES = frozenset({"stop_limit", "stop_market", "take_profit_limit", "take_profit_market"})
"""Orders that rest off-book, untriggered, until a trade prints through ``stop_price``."""
LIMIT_TYPES = frozenset({"limit", "stop_limit", "take_profit_limit"})
"""Orders with a limit ``price`` (a stop of these becomes a limit order when triggered)."""
MARKET_TYPES = frozenset({"market", "stop_market", "take_profit_market"})
"""Orders without a price (a stop of these becomes a market order when triggered)."""


def triggers_above(order_type: str, side: str) -> bool:
    """True when a stop of ``order_type`` on ``side`` triggers on a trade at or above its
    ``stop_price`` (a stop buy, a take-profit sell); False: at or below (a stop sell, a
    take-profit buy). O(1)."""
    return (side == "buy") == order_type.startswith("stop_")


def report_tif(order_type: str, tif: str) -> str:
    """The time in force an order's reports state: a market order's is IOC unless it is
    FOK; a stop market's GTD (its untriggered life) is kept too. O(1)."""
    if order_type in LIMIT_TYPES or tif == "FOK" or (tif == "GTD" and order_type != "market"):
        return tif
    return "IOC"


class Message(msgspec.Struct, tag_field="kind", array_like=True, frozen=True, gc=False):
    """Base of every command and event: positional msgpack arrays tagged by kind."""


class Place(Message, tag="place", frozen=True):
    """Place a new order. Its order id is the input stream entry id (or, for a command the
    risk stage forwarded, the id it carries: ``contract.streams.FORWARD_ID_FIELD``).

    A market buy by budget carries ``quote_qty`` (quote units: the most it may spend,
    fees included) and ``qty`` 0: it fills while the next fill and its fee fit in what
    is left of ``quote_qty``, and the rest expires (its reports' ``qty`` is the filled
    quantity). ``quote_qty`` is 0 for every other order (a stop or take-profit market
    buy may carry one too: it is spent when the stop triggers).

    ``stop_price`` (ticks) is the trigger of a stop/take-profit type (0 otherwise);
    ``expire_time`` (ms since the epoch) the end of a ``GTD`` order (0 otherwise);
    ``display_qty`` (lots) the shown slice of an iceberg (0: the whole order shows).
    """

    account: str
    side: Side
    type: OrderType
    qty: int
    price: int = 0  # ticks; 0 (ignored) for market orders
    tif: Tif = "GTC"
    post_only: bool = False
    client_order_id: str | None = None
    stp: StpMode = "cancel_taker"
    quote_qty: int = 0
    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0

    def invalid_field(self) -> str | None:
        """Why a ``Place`` built in Python is not valid (``"side: 'Buy' is not ..."``), or None.

        The decoder refuses such values itself; the book calls this for every
        place it applies (~30 ns: tuple membership tests hit the interned
        literals by identity), so ``Place(side="Buy")`` is rejected instead of
        resting as a sell. A ``__post_init__`` would cost every decode ~70 ns.
        """
        if (self.side in SIDES and self.type in ORDER_TYPES and self.tif in TIFS
                and self.stp in STP_MODES):
            return None
        for name, allowed in (("side", SIDES), ("type", ORDER_TYPES), ("tif", TIFS),
                              ("stp", STP_MODES)):
            value = getattr(self, name)
            if value not in allowed:
                return f"{name}: {str(value)[:40]!r} is not one of {', '.join(allowed)}"
        return None  # pragma: no cover - one of the tests above failed


class Cancel(Message, tag="cancel", frozen=True):
    """Cancel one of the account's open orders by ``order_id`` or ``client_order_id``."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None


class Amend(Message, tag="amend", frozen=True):
    """Change an open order's total quantity, price and/or (an untriggered stop's)
    ``stop_price`` (None = unchanged)."""

    account: str
    order_id: str | None = None
    client_order_id: str | None = None
    qty: int | None = None
    price: int | None = None
    stop_price: int | None = None


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


class Clock(Message, tag="clock", frozen=True):
    """The engine's own entry when a ``GTD`` expiry is due on a quiet market: it only
    moves the market's clock to its entry's time (which expires what is due)."""


OrderCommand = Place | Cancel | Amend | CancelAll
"""What an account sends (through the gateway, or forwarded by the risk stage)."""
Command = OrderCommand | Clock


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


def encode_command(cmd: Command) -> bytes:
    """msgpack bytes of ``cmd``; raises ``ValueError`` for a ``Place`` with a wrong value."""
    if type(cmd) is Place and (reason := cmd.invalid_field()) is not None:
        raise ValueError(reason)
    return _encoder.encode(cmd)


decode_command = _decoder.decode
"""Decode one input entry; raises ``msgspec.DecodeError``/``ValidationError`` if bad."""

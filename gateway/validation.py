"""Order-entry requests: a websocket frame in, a typed request or a coded error out.

Sans-I/O: nothing here touches the network. :func:`decode_request` turns one
frame into a :class:`Request` (envelope + typed params) and
:func:`commands_for` turns an order-entry request's params into checked
engine commands, so every bad input is refused before anything reaches Redis.
Every failure is a ``StreamexError`` whose code is one of PROTOCOL.md's and
whose message names the field, e.g. ``params.qty: expected `str`, got `int```;
decoding raises its subclass :class:`RequestError`, which also carries the
request id to echo (None when it could not be read). Nothing else escapes for
any input; tests fuzz it to hold that.

Costs: one msgspec decode of the envelope (typed, no intermediate dict) and
one of the params, O(frame length).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeAlias

import msgspec

from engine.errors import (
    BAD_REQUEST,
    UNKNOWN_METHOD,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    StreamexError,
)
from engine.market import Market
from engine.messages import Amend, Cancel, CancelAll, OrderType, Place, Side, StpMode, Tif

MAX_ID_LENGTH = 64
"""Longest string request id echoed back; longer ones get ``id`` null."""

_INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)
RequestId: TypeAlias = (
    Annotated[int, _INT64] | Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
)
ClientOrderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,36}$")]
# Symbols, order ids and decimals have no length cap here: an overlong one is not
# listed / not an order / not a plain decimal and gets that specific code (the
# 64 KiB frame limit bounds them).
Symbol = str
OrderId = str
DecimalString = str

# An order id is the input stream entry id of its place command.
_ORDER_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class RequestError(StreamexError):
    """A request refused with a protocol code; ``request_id`` is echoed (None if unreadable)."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


# -- the envelope ---------------------------------------------------------------


class Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``{"id", "method", "params"?}``; ``params`` is decoded once the method is known."""

    id: RequestId
    method: Annotated[str, msgspec.Meta(max_length=64)]
    params: msgspec.Raw = msgspec.Raw(b"{}")


# -- params of each method ----------------------------------------------------------


class _Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    pass


class NoParams(_Params, frozen=True):
    """``ping`` and ``markets`` take no parameters."""


class LogonParams(_Params, frozen=True):
    api_key: Annotated[str, msgspec.Meta(max_length=256)]
    timestamp: Annotated[int, _INT64]
    signature: Annotated[str, msgspec.Meta(max_length=256)]
    cancel_on_disconnect: bool = False


class PlaceParams(_Params, frozen=True):
    symbol: Symbol
    side: Side
    type: OrderType
    qty: DecimalString
    price: DecimalString | None = None
    tif: Tif | None = None
    post_only: bool = False
    client_order_id: ClientOrderId | None = None
    stp: StpMode = "cancel_taker"


class CancelParams(_Params, frozen=True):
    symbol: Symbol
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None


class AmendParams(_Params, frozen=True):
    symbol: Symbol
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None
    qty: DecimalString | None = None
    price: DecimalString | None = None


class SymbolParams(_Params, frozen=True):
    """``order.cancel_all`` and ``orders.open``: an optional symbol (None = every market)."""

    symbol: Symbol | None = None


Params = NoParams | LogonParams | PlaceParams | CancelParams | AmendParams | SymbolParams


class MethodSpec(msgspec.Struct, frozen=True):
    """How a method's params decode and whether it needs a logged-on session."""

    decoder: Any  # msgspec.json.Decoder of the method's params Struct
    needs_logon: bool


METHODS: Mapping[str, MethodSpec] = {
    "ping": MethodSpec(msgspec.json.Decoder(NoParams), False),
    "markets": MethodSpec(msgspec.json.Decoder(NoParams), False),
    "logon": MethodSpec(msgspec.json.Decoder(LogonParams), False),
    "order.place": MethodSpec(msgspec.json.Decoder(PlaceParams), True),
    "order.cancel": MethodSpec(msgspec.json.Decoder(CancelParams), True),
    "order.amend": MethodSpec(msgspec.json.Decoder(AmendParams), True),
    "order.cancel_all": MethodSpec(msgspec.json.Decoder(SymbolParams), True),
    "orders.open": MethodSpec(msgspec.json.Decoder(SymbolParams), True),
}


ORDER_METHODS = frozenset({"order.place", "order.cancel", "order.amend", "order.cancel_all"})
"""Methods that send commands to an engine (and count against the account's rate)."""


class Request(msgspec.Struct, frozen=True, gc=False):
    """A well-formed request: its id, its method name (a key of METHODS) and typed params."""

    id: int | str
    method: str
    params: Params
    needs_logon: bool


_envelope_decoder = msgspec.json.Decoder(Envelope)


def decode_envelope(frame: str | bytes) -> Envelope:
    """Decode ``{"id", "method", "params"?}`` of one frame; params stay raw.

    Raises :class:`RequestError` BAD_REQUEST (binary frame, not JSON, not an
    object, wrong shape, a bad ``id``) with the id when it could be read.
    """
    if not isinstance(frame, str):
        raise RequestError(BAD_REQUEST, "binary frames are not accepted: send JSON text frames")
    try:
        return _envelope_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
        raise RequestError(BAD_REQUEST, describe(exc), salvage_id(frame)) from None


def decode_params(envelope: Envelope) -> Request:
    """Decode the envelope's params for its method.

    Raises :class:`RequestError` UNKNOWN_METHOD for a method that does not
    exist, else BAD_REQUEST naming the offending field.
    """
    spec = METHODS.get(envelope.method)
    if spec is None:
        raise RequestError(UNKNOWN_METHOD, f"method: no method named {_quote(envelope.method)}",
                           envelope.id)
    try:
        params = spec.decoder.decode(envelope.params)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
        raise RequestError(BAD_REQUEST, describe(exc, "params"), envelope.id) from None
    return Request(envelope.id, envelope.method, params, spec.needs_logon)


def decode_request(frame: str | bytes) -> Request:
    """One frame -> :class:`Request`; every failure is a :class:`RequestError`."""
    return decode_params(decode_envelope(frame))


def salvage_id(frame: str) -> int | str | None:
    """The request id of a frame that failed to decode, if it can be read; else None."""
    try:
        value = msgspec.json.decode(frame)
    except Exception:  # malformed JSON, nesting too deep, ...: no id to echo
        return None
    if type(value) is not dict:
        return None
    rid = value.get("id")
    if type(rid) is int and -(2**63) <= rid < 2**63:
        return rid
    if type(rid) is str and len(rid) <= MAX_ID_LENGTH:
        return rid
    return None


_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(.*)`$", re.DOTALL)


def describe(exc: Exception, root: str = "") -> str:
    """A peer-safe message naming the field from a msgspec error, e.g. ``params.qty: ...``."""
    if isinstance(exc, RecursionError):
        return f"{root or 'request'}: nested too deeply"
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return f"{root or 'request'}: not valid JSON"
    text = str(exc)
    match = _AT.match(text)
    assert match is not None  # the pattern matches any string
    message, path = match.group(1), match.group(2) or ""
    where = (f"{root}{path}" if root else path.lstrip(".")) or root
    for pattern, what in ((_UNKNOWN_FIELD, "unknown field"), (_MISSING_FIELD, "required")):
        found = pattern.match(message)
        if found:
            name = found.group(1)[:40]
            return f"{where}.{name}: {what}" if where else f"{name}: {what}"
    if message.startswith("Expected `object`") and not where:
        return "request: must be a JSON object like {\"id\": 1, \"method\": \"ping\"}"
    message = message[:1].lower() + message[1:200]
    return f"{where or 'request'}: {message}"


def _quote(text: str) -> str:
    """``text`` for an error message: repr-quoted and cut to 40 characters."""
    return repr(text[:40])


# -- params -> engine commands --------------------------------------------------------


def market_of(markets: Mapping[str, Market], symbol: str) -> Market:
    """The listed market ``symbol``; raises StreamexError UNKNOWN_SYMBOL. O(1)."""
    market = markets.get(symbol)
    if market is None:
        raise StreamexError(UNKNOWN_SYMBOL, f"params.symbol: {_quote(symbol)} is not listed")
    return market


def place_command(params: PlaceParams, market: Market, account: str) -> Place:
    """Check an ``order.place`` and build its command; raises StreamexError with the code."""
    tif: Tif
    if params.type == "limit":
        if params.price is None:
            raise StreamexError(BAD_REQUEST, "params.price: required for a limit order")
        tif = params.tif or "GTC"
        if params.post_only and tif != "GTC":
            raise StreamexError(BAD_REQUEST, f"params.post_only: not allowed with tif {tif}")
        qty = market.parse_qty(params.qty, "params.qty")
        price = market.parse_price(params.price, "params.price")
    else:
        if params.price is not None:
            raise StreamexError(BAD_REQUEST, "params.price: not allowed for a market order")
        if params.post_only:
            raise StreamexError(BAD_REQUEST, "params.post_only: not allowed for a market order")
        # Market orders never rest: FOK stays FOK, anything else is IOC.
        tif = "FOK" if params.tif == "FOK" else "IOC"
        qty = market.parse_qty(params.qty, "params.qty")
        price = 0
    return Place(account, params.side, params.type, qty, price, tif, params.post_only,
                 params.client_order_id, params.stp)


def _order_ref(order_id: str | None, client_order_id: str | None) -> None:
    if (order_id is None) == (client_order_id is None):
        raise StreamexError(BAD_REQUEST,
                            "params: give exactly one of order_id and client_order_id")
    if order_id is not None and not _ORDER_ID.fullmatch(order_id):
        # Not an entry id, so never an order id: certainly not one of the account's.
        raise StreamexError(UNKNOWN_ORDER, f"params.order_id: no open order {_quote(order_id)}")


def cancel_command(params: CancelParams, account: str) -> Cancel:
    """Check an ``order.cancel`` and build its command; raises StreamexError with the code."""
    _order_ref(params.order_id, params.client_order_id)
    return Cancel(account, params.order_id, params.client_order_id)


def amend_command(params: AmendParams, market: Market, account: str) -> Amend:
    """Check an ``order.amend`` and build its command; raises StreamexError with the code."""
    _order_ref(params.order_id, params.client_order_id)
    if params.qty is None and params.price is None:
        raise StreamexError(BAD_REQUEST, "params: give qty, price or both to amend")
    qty = None if params.qty is None else market.parse_qty(params.qty, "params.qty")
    price = None if params.price is None else market.parse_price(params.price, "params.price")
    return Amend(account, params.order_id, params.client_order_id, qty, price)



def commands_for(params: Params, markets: Mapping[str, Market], account: str
                 ) -> list[tuple[str, Place | Cancel | Amend | CancelAll]]:
    """The ``(symbol, command)`` pairs an order-entry request asks for, fully checked.

    ``order.place``/``order.cancel``/``order.amend`` give one pair,
    ``order.cancel_all`` one per market it names (every market when none).
    Raises StreamexError (UNKNOWN_SYMBOL, BAD_REQUEST, INVALID_*, UNKNOWN_ORDER).
    """
    if isinstance(params, PlaceParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, place_command(params, market, account))]
    if isinstance(params, CancelParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, cancel_command(params, account))]
    if isinstance(params, AmendParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, amend_command(params, market, account))]
    if isinstance(params, SymbolParams):
        if params.symbol is not None:
            return [(market_of(markets, params.symbol).symbol, CancelAll(account))]
        return [(symbol, CancelAll(account)) for symbol in markets]
    raise TypeError(f"not an order-entry request: {type(params).__name__}")

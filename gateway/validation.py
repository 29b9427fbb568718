"""Order-entry requests: a websocket frame in, a typed request or a coded error out.

Sans-I/O: nothing here touches the network. :func:`decode_request` turns one
frame into a :class:`Request` (envelope + typed params, ``contract.wire`` and
``contract.order_entry``) and :func:`commands_for` turns an order-entry
request's params into checked engine commands, so every bad input is refused
before anything reaches Redis. Every failure is a ``StreamexError`` whose
code is one of PROTOCOL.md's and whose message names the field, e.g.
``params.qty: expected `str`, got `int```; decoding raises its subclass
``RequestError``, which also carries the request id to echo (None when it
could not be read). Nothing else escapes for any input; tests fuzz it to hold
that.

Costs: one msgspec decode of the envelope (typed, no intermediate dict) and
one of the params, O(frame length).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from contract.commands import Amend, Cancel, CancelAll, Place, Tif
from contract.errors import (
    BAD_REQUEST,
    UNKNOWN_METHOD,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    StreamexError,
)
from contract.market import Market
from contract.order_entry import (
    AmendParams,
    CancelParams,
    LogonParams,
    NoParams,
    Params,
    PlaceParams,
    SymbolParams,
)
from contract.wire import Envelope, RequestError, decode_envelope, decode_params, quote

# An order id is the input stream entry id of its place command.
_ORDER_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")



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


def decode_method(envelope: Envelope) -> Request:
    """Decode the envelope's params for its method.

    Raises :class:`RequestError` UNKNOWN_METHOD for a method that does not
    exist, else BAD_REQUEST naming the offending field.
    """
    spec = METHODS.get(envelope.method)
    if spec is None:
        raise RequestError(UNKNOWN_METHOD, f"method: no method named {quote(envelope.method)}",
                           envelope.id)
    params = decode_params(envelope, spec.decoder)
    assert envelope.id is not None  # decode_envelope requires it here
    return Request(envelope.id, envelope.method, params, spec.needs_logon)


def decode_request(frame: str | bytes) -> Request:
    """One frame -> :class:`Request`; every failure is a :class:`RequestError`."""
    return decode_method(decode_envelope(frame))


# -- params -> engine commands --------------------------------------------------------


def market_of(markets: Mapping[str, Market], symbol: str) -> Market:
    """The listed market ``symbol``; raises StreamexError UNKNOWN_SYMBOL. O(1)."""
    market = markets.get(symbol)
    if market is None:
        raise StreamexError(UNKNOWN_SYMBOL, f"params.symbol: {quote(symbol)} is not listed")
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
        raise StreamexError(UNKNOWN_ORDER, f"params.order_id: no open order {quote(order_id)}")


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

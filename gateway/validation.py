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
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from contract.commands import LIMIT_TYPES, STOP_TYPES, Amend, Cancel, CancelAll, Place, Tif
from contract.errors import (
    BAD_REQUEST,
    INVALID_EXPIRE_TIME,
    INVALID_QTY,
    INVALID_STOP_PRICE,
    UNKNOWN_METHOD,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    StreamexError,
)
from contract.market import Market
from contract.order_entry import (
    AmendParams,
    BalancesParams,
    CancelParams,
    LogonParams,
    NoParams,
    Params,
    PlaceParams,
    SymbolParams,
)
from contract.wire import Envelope, RequestError, decode_envelope, decode_params, quote

# An order id is the input stream entry id of its place command; under the risk stage
# the risk shard's input entry id, with "-K" for shard K > 0 (contract.ids.stage_order_id).
_ORDER_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_STAGE_ORDER_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}(?:-[0-9]{1,3})?")


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
"""The methods of protocol v1 (every gateway serves them)."""

RISK_METHODS: Mapping[str, MethodSpec] = {
    **METHODS,
    "account.balances": MethodSpec(msgspec.json.Decoder(BalancesParams), True),
}
"""The methods of a gateway with the risk stage on (``[risk] enabled``): v1's and balances."""


ORDER_METHODS = frozenset({"order.place", "order.cancel", "order.amend", "order.cancel_all"})
"""Methods that send commands to an engine (and count against the account's rate)."""


class Request(msgspec.Struct, frozen=True, gc=False):
    """A well-formed request: its id, its method name (a key of METHODS) and typed params."""

    id: int | str
    method: str
    params: Params
    needs_logon: bool


def decode_method(envelope: Envelope, methods: Mapping[str, MethodSpec] = METHODS) -> Request:
    """Decode the envelope's params for its method (one of ``methods``).

    Raises :class:`RequestError` UNKNOWN_METHOD for a method that does not
    exist, else BAD_REQUEST naming the offending field.
    """
    spec = methods.get(envelope.method)
    if spec is None:
        raise RequestError(UNKNOWN_METHOD, f"method: no method named {quote(envelope.method)}",
                           envelope.id)
    params = decode_params(envelope, spec.decoder)
    assert envelope.id is not None  # decode_envelope requires it here
    return Request(envelope.id, envelope.method, params, spec.needs_logon)


def decode_request(frame: str | bytes, methods: Mapping[str, MethodSpec] = METHODS) -> Request:
    """One frame -> :class:`Request`; every failure is a :class:`RequestError`."""
    return decode_method(decode_envelope(frame), methods)


# -- params -> engine commands --------------------------------------------------------


def market_of(markets: Mapping[str, Market], symbol: str) -> Market:
    """The listed market ``symbol``; raises StreamexError UNKNOWN_SYMBOL. O(1)."""
    market = markets.get(symbol)
    if market is None:
        raise StreamexError(UNKNOWN_SYMBOL, f"params.symbol: {quote(symbol)} is not listed")
    return market


def place_command(params: PlaceParams, market: Market, account: str, *,
                  risk: bool = False, now_ms: int | None = None) -> Place:
    """Check an ``order.place`` and build its command; raises StreamexError with the code.

    With ``risk`` (the risk stage is on) a market, stop market or take-profit
    market buy carries ``quote_qty`` (quote units, fees included) and ``qty`` 0;
    every other order carries ``qty`` and no ``quote_qty`` (PROTOCOL.md, section
    A). Without it ``quote_qty`` is refused everywhere. Section B: ``stop_price``
    (ticks) for the stop and take-profit types only, ``expire_time`` for ``GTD``
    only and later than ``now_ms`` (the gateway's clock; default the wall clock),
    ``display_qty`` (lots, at most ``qty``) for limit types that may rest. The
    presence of fields is checked first (BAD_REQUEST), then each value. O(1).
    """
    order_type = params.type
    limit = order_type in LIMIT_TYPES
    stop = order_type in STOP_TYPES
    budget = risk and not limit and params.side == "buy"
    if params.quote_qty is not msgspec.UNSET and not budget:
        why = ("only for a market (or stop/take-profit market) buy" if risk
               else "needs the risk stage ([risk] enabled)")
        raise StreamexError(BAD_REQUEST, f"params.quote_qty: {why}")
    if budget:
        if params.qty is not msgspec.UNSET:
            raise StreamexError(BAD_REQUEST, f"params.qty: not allowed for a {order_type} buy "
                                             "(give quote_qty, the most quote to spend)")
        if params.quote_qty is msgspec.UNSET:
            raise StreamexError(BAD_REQUEST,
                                f"params.quote_qty: required for a {order_type} buy")
    elif params.qty is msgspec.UNSET:
        raise StreamexError(BAD_REQUEST, "params.qty: required")
    tif = _place_tif(params, limit, stop, budget)
    if params.stop_price is not msgspec.UNSET and not stop:
        raise StreamexError(BAD_REQUEST, f"params.stop_price: not allowed for a {order_type} "
                                         "order (only the stop and take-profit types)")
    if params.display_qty is not msgspec.UNSET and not (limit and tif in _RESTING_TIFS):
        raise StreamexError(BAD_REQUEST, "params.display_qty: only for an order with a limit "
                                         "price and tif GTC or GTD (one that can rest)")
    qty = 0
    quote_qty = 0
    if budget:
        quote_qty = market.parse_quote(params.quote_qty, "params.quote_qty")
    else:
        qty = market.parse_qty(params.qty, "params.qty")
    price = market.parse_price(params.price, "params.price") if limit else 0
    stop_price = _stop_price(market, params.stop_price, order_type) if stop else 0
    expire_time = _expire_time(params.expire_time, tif, now_ms)
    display_qty = 0
    if params.display_qty is not msgspec.UNSET:
        display_qty = market.parse_qty(params.display_qty, "params.display_qty")
        if display_qty > qty:
            raise StreamexError(INVALID_QTY, "params.display_qty: must not exceed qty")
    return Place(account, params.side, order_type, qty, price, tif, params.post_only,
                 params.client_order_id, params.stp, quote_qty, stop_price, expire_time,
                 display_qty)


_RESTING_TIFS = frozenset({"GTC", "GTD"})
"""Times in force of an order that may rest in the book (post-only, iceberg)."""


def _place_tif(params: PlaceParams, limit: bool, stop: bool, budget: bool) -> Tif:
    """The checked time in force of a place (price and post-only rules included). O(1)."""
    order_type = params.type
    if limit:
        if params.price is None:
            raise StreamexError(BAD_REQUEST, f"params.price: required for a {order_type} order")
        tif: Tif = params.tif or "GTC"
        if params.post_only:
            if stop:
                raise StreamexError(BAD_REQUEST, f"params.post_only: not allowed for a "
                                                 f"{order_type} order")
            if tif not in _RESTING_TIFS:
                raise StreamexError(BAD_REQUEST, f"params.post_only: not allowed with tif {tif}")
        return tif
    if params.price is not None:
        raise StreamexError(BAD_REQUEST, f"params.price: not allowed for a {order_type} order")
    if params.post_only:
        raise StreamexError(BAD_REQUEST, f"params.post_only: not allowed for a {order_type} "
                                         "order")
    if params.tif == "GTD" and not stop:
        raise StreamexError(BAD_REQUEST, "params.tif: GTD is not allowed for a market order "
                                         "(it never rests)")
    # Market orders never rest: FOK stays FOK, anything else is IOC; a stop market's GTD
    # bounds its untriggered life.
    tif = params.tif if params.tif in ("FOK", "GTD") else "IOC"
    if budget and tif == "FOK":  # all-or-nothing has no meaning for a budget
        raise StreamexError(BAD_REQUEST, f"params.tif: FOK is not allowed for a {order_type} "
                                         "buy by quote_qty")
    return tif


def _stop_price(market: Market, text: str | msgspec.UnsetType, order_type: str) -> int:
    """A stop's trigger in ticks; INVALID_STOP_PRICE when missing, malformed, off the tick
    grid or outside [min_price, max_price]. O(len)."""
    if text is msgspec.UNSET:
        raise StreamexError(INVALID_STOP_PRICE,
                            f"params.stop_price: required for a {order_type} order")
    try:
        return market.parse_price(text, "params.stop_price")
    except StreamexError as exc:
        raise StreamexError(INVALID_STOP_PRICE, exc.message) from None


def _expire_time(value: int | msgspec.UnsetType, tif: str, now_ms: int | None) -> int:
    """A GTD order's ``expire_time`` (0 for any other tif); INVALID_EXPIRE_TIME when a GTD
    order has none or one not later than the gateway's clock, or another tif has one."""
    if tif != "GTD":
        if value is not msgspec.UNSET:
            raise StreamexError(INVALID_EXPIRE_TIME,
                                f"params.expire_time: only with tif GTD (tif is {tif})")
        return 0
    if value is msgspec.UNSET:
        raise StreamexError(INVALID_EXPIRE_TIME, "params.expire_time: required with tif GTD")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if value <= now:
        raise StreamexError(INVALID_EXPIRE_TIME, f"params.expire_time: {value} is not later "
                                                 f"than the gateway's clock ({now} ms)")
    return value


def _order_ref(order_id: str | None, client_order_id: str | None, risk: bool) -> None:
    if (order_id is None) == (client_order_id is None):
        raise StreamexError(BAD_REQUEST,
                            "params: give exactly one of order_id and client_order_id")
    if order_id is not None and not (_STAGE_ORDER_ID if risk else _ORDER_ID).fullmatch(order_id):
        # Not an entry id, so never an order id: certainly not one of the account's.
        raise StreamexError(UNKNOWN_ORDER, f"params.order_id: no open order {quote(order_id)}")


def cancel_command(params: CancelParams, account: str, *, risk: bool = False) -> Cancel:
    """Check an ``order.cancel`` and build its command; raises StreamexError with the code."""
    _order_ref(params.order_id, params.client_order_id, risk)
    return Cancel(account, params.order_id, params.client_order_id)


def amend_command(params: AmendParams, market: Market, account: str, *,
                  risk: bool = False) -> Amend:
    """Check an ``order.amend`` and build its command; raises StreamexError with the code."""
    _order_ref(params.order_id, params.client_order_id, risk)
    if params.qty is None and params.price is None and params.stop_price is None:
        raise StreamexError(BAD_REQUEST, "params: give qty, price, stop_price or several "
                                         "to amend")
    qty = None if params.qty is None else market.parse_qty(params.qty, "params.qty")
    price = None if params.price is None else market.parse_price(params.price, "params.price")
    stop_price = (None if params.stop_price is None
                  else _stop_price(market, params.stop_price, "stop"))
    return Amend(account, params.order_id, params.client_order_id, qty, price, stop_price)



def commands_for(params: Params, markets: Mapping[str, Market], account: str, *,
                 risk: bool = False, now_ms: int | None = None
                 ) -> list[tuple[str, Place | Cancel | Amend | CancelAll]]:
    """The ``(symbol, command)`` pairs an order-entry request asks for, fully checked.

    ``order.place``/``order.cancel``/``order.amend`` give one pair,
    ``order.cancel_all`` one per market it names (every market when none).
    ``risk``: the risk stage is on (market buys by ``quote_qty``, order ids
    of risk shards); ``now_ms``: the gateway's clock, which a ``GTD`` order's
    ``expire_time`` must be later than (default the wall clock). Raises
    StreamexError (UNKNOWN_SYMBOL, BAD_REQUEST, INVALID_*, UNKNOWN_ORDER).
    """
    if isinstance(params, PlaceParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, place_command(params, market, account, risk=risk,
                                              now_ms=now_ms))]
    if isinstance(params, CancelParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, cancel_command(params, account, risk=risk))]
    if isinstance(params, AmendParams):
        market = market_of(markets, params.symbol)
        return [(market.symbol, amend_command(params, market, account, risk=risk))]
    if isinstance(params, SymbolParams):
        if params.symbol is not None:
            return [(market_of(markets, params.symbol).symbol, CancelAll(account))]
        return [(symbol, CancelAll(account)) for symbol in markets]
    raise TypeError(f"not an order-entry request: {type(params).__name__}")

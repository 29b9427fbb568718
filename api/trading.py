"""Order entry over REST: ``POST /api/v3/order``, ``DELETE /api/v3/order`` and ``openOrders``.

A request is turned into the websocket protocol's params (``PlaceParams``,
``CancelParams``) and handed to the process's ``gateway.entry.OrderEntry``:
the same rate limit, validation, duplicate client order id refusal,
``OVERLOADED`` admission, risk-stage staging and XADD as an ``order.place``
on the websocket. Then the handler waits (``api.outcomes``, at most
``answer_timeout_s``) for the engine's answer and states it as Binance does:

- ``newOrderRespType`` ``ACK`` answers once the order is in the input stream;
  ``RESULT`` and ``FULL`` (the default for LIMIT and MARKET) once the
  engine's first command on it is read: its status then, and for FULL its
  fills with price, qty, commission (quote, as charged) and tradeId. An
  order the engine or the risk stage rejected is -2010 with the reason in
  Binance's words (``INSUFFICIENT_FUNDS``: "Account has insufficient balance
  for requested action.", ``POST_ONLY_WOULD_TAKE``: "Order would immediately
  match and take.").
- A cancel answers with the order as canceled, or -2011 "Unknown order
  sent." when the account has no such open order (or it ended first).
- No answer in time, or an XADD Redis did not confirm, is -1007 with HTTP
  503: the execution status is unknown (query the order).

Parameters mapping: LIMIT (``timeInForce`` GTC/IOC/FOK/GTD, ``quantity``,
``price``), LIMIT_MAKER (post-only GTC), MARKET (``quantity``; a buy under
the risk stage takes ``quoteOrderQty`` instead: the most quote it may spend,
fees included), STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT (``stop_limit`` /
``take_profit_limit``: LIMIT's parameters and ``stopPrice``), STOP_LOSS /
TAKE_PROFIT (``stop_market`` / ``take_profit_market``: MARKET's amount and
``stopPrice``; ``timeInForce`` only GTD or FOK), ``icebergQty`` (the
``display_qty`` of a LIMIT, LIMIT_MAKER or *_LIMIT order that rests: GTC or
GTD), ``timeInForce=GTD`` with ``goodTillDate`` (ms, as on Binance's
futures API: the ``expire_time``), ``newClientOrderId`` (generated when
absent, as Binance does), ``selfTradePreventionMode`` (EXPIRE_TAKER, the
default, EXPIRE_MAKER, EXPIRE_BOTH, NONE). Trailing deltas are refused with
Binance's "not supported for this symbol".
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any, TypeVar

import msgspec

from api.context import ApiContext, ApiRequest
from api.errors import (
    CANCEL_REJECTED,
    EMPTY_NEW_CL_ORD_ID,
    EMPTY_ORG_CL_ORD_ID,
    INVALID_CANCEL_RESTRICTIONS,
    INVALID_MESSAGE,
    INVALID_ORDER_TYPE,
    INVALID_SIDE,
    INVALID_TIF,
    MANDATORY_PARAM,
    NEW_ORDER_REJECTED,
    TIF_NOT_REQUIRED,
    UNKNOWN_ORDER_SENT,
    UNSUPPORTED_COMBINATION,
    BinanceError,
    from_streamex,
    illegal_chars,
    mandatory,
    not_required,
    rejected,
    status_unknown,
)
from api.params import Params
from api.shapes import (
    STATUSES,
    STOP_TYPES_OF_BINANCE,
    STP_OF_BINANCE,
    TYPE_OF_BINANCE,
    OrderState,
    ack_json,
    cancel_json,
    full_json,
    result_json,
    state_of_report,
)
from contract.errors import StreamexError
from contract.events import CancelRejected, Report
from contract.ids import order_id_of_number, ts_of
from contract.market import Market
from contract.order_entry import CancelParams, PlaceParams, SymbolParams

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
CLIENT_ID_RANGE = "^[a-zA-Z0-9-_]{1,36}$"
PRICED_TYPES = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
"""Binance types with a limit ``price`` (and ``quantity``); the others are market orders."""
RESP_TYPES = ("ACK", "RESULT", "FULL")
TIFS = ("GTC", "IOC", "FOK", "GTD")
"""``timeInForce`` of LIMIT and the *_LIMIT types."""
STOP_MARKET_TIFS = ("GTD", "FOK")
"""``timeInForce`` a STOP_LOSS / TAKE_PROFIT may carry (otherwise IOC once triggered)."""
RESTING_TIFS = ("GTC", "GTD")
"""``timeInForce`` an iceberg may have (it must be able to rest)."""
TIF_SENT = "TimeInForce parameter sent when not required."
PENDING_WAIT_S = 2.0
"""How long a cancel or query waits for the first report of a place still in flight."""

T = TypeVar("T")


def client_order_id(params: Params, name: str, empty_code: int) -> str | None:
    """A client order id parameter: ``^[a-zA-Z0-9-_]{1,36}$`` (-1100), not empty."""
    value = params.raw(name)
    if value is None:
        return None
    if value == "":
        raise BinanceError(empty_code, "New client order ID was empty."
                           if empty_code == EMPTY_NEW_CL_ORD_ID
                           else "Original client order ID was empty.")
    if not CLIENT_ID.fullmatch(value):
        raise illegal_chars(name, CLIENT_ID_RANGE)
    return value


def new_client_order_id() -> str:
    """A generated client order id, as Binance gives an order sent without one."""
    return "sx-" + secrets.token_urlsafe(16)[:22]


async def answer(ctx: ApiContext, future: asyncio.Future[T], what: str) -> T:
    """``future``'s result within ``answer_timeout_s``, else -1007 (HTTP 503). The
    future is shielded: other requests may wait on it too."""
    try:
        async with asyncio.timeout(ctx.answer_timeout_s):
            return await asyncio.shield(future)
    except TimeoutError:
        raise status_unknown(f" (no answer to the {what} within {ctx.answer_timeout_s:g} s: "
                             "query the order)") from None
    except asyncio.CancelledError:
        if future.cancelled():  # dropped by the bounded waiters, not our task cancelled
            raise status_unknown(f" (the {what} is no longer followed)") from None
        raise


async def received(future: asyncio.Future[T], what: str) -> T:
    """The XADD's result; -1007 (HTTP 503) if Redis did not confirm it (it may be in)."""
    await asyncio.wait({future})
    if future.cancelled() or future.exception() is not None:
        raise status_unknown(f" (the {what} may not have been received)")
    return future.result()


def _place_params(ctx: ApiContext, market: Market, params: Params
                  ) -> tuple[PlaceParams, str, str | None]:
    """Binance's new-order parameters -> ``(PlaceParams, response type, quoteOrderQty)``.

    Checks what Binance checks before an order reaches its engine (mandatory and
    unwanted parameters, ``timeInForce``, the iceberg's and GTD's combinations); the
    values' bounds and steps are the order entry's (``gateway.validation``)."""
    side = params.enum("side", ("BUY", "SELL"), required=True,
                       error=BinanceError(INVALID_SIDE, "Invalid side."))
    kind = params.required("type")
    if kind not in TYPE_OF_BINANCE:
        raise BinanceError(INVALID_ORDER_TYPE, "Invalid orderType.")
    tif = params.text("timeInForce")
    quantity = params.decimal("quantity")
    quote_qty = params.decimal("quoteOrderQty")
    price = params.decimal("price")
    stop_price = params.decimal("stopPrice")
    iceberg_qty = params.decimal("icebergQty")
    good_till = params.long("goodTillDate")
    coid = client_order_id(params, "newClientOrderId", EMPTY_NEW_CL_ORD_ID)
    stp = params.enum("selfTradePreventionMode", STP_OF_BINANCE)
    resp = params.enum("newOrderRespType", RESP_TYPES)
    if params.text("trailingDelta") is not None:
        raise BinanceError(NEW_ORDER_REJECTED,
                           "Trailing stop orders are not supported for this symbol.")
    params.finish()
    if kind in PRICED_TYPES:
        tif = _limit_tif(kind, tif)
        if quantity is None:
            raise mandatory("quantity")
        if price is None:
            raise mandatory("price")
        if quote_qty is not None:
            raise not_required("quoteOrderQty")
    else:
        tif = _market_tif(kind, tif)
        if price is not None:
            raise not_required("price")
        _market_amount(ctx, kind, side, quantity, quote_qty)
    if kind in STOP_TYPES_OF_BINANCE:
        if stop_price is None:
            raise mandatory("stopPrice")
    elif stop_price is not None:
        raise not_required("stopPrice")
    if iceberg_qty is not None:
        if kind not in PRICED_TYPES:
            raise not_required("icebergQty")
        if tif not in RESTING_TIFS:
            raise BinanceError(INVALID_MESSAGE, f"{UNSUPPORTED_COMBINATION} (icebergQty needs "
                               "timeInForce GTC or GTD: an iceberg rests)")
    if tif == "GTD":
        if good_till is None:
            raise mandatory("goodTillDate")
    elif good_till is not None:
        raise not_required("goodTillDate", " (it goes with timeInForce=GTD)")
    place = PlaceParams(
        symbol=market.symbol, side="buy" if side == "BUY" else "sell",
        type=TYPE_OF_BINANCE[kind],  # type: ignore[arg-type]
        qty=_given(quantity),
        price=price, tif=tif,  # type: ignore[arg-type]
        post_only=kind == "LIMIT_MAKER", client_order_id=coid or new_client_order_id(),
        stp=STP_OF_BINANCE[stp] if stp is not None else "cancel_taker",  # type: ignore[arg-type]
        quote_qty=_given(quote_qty), stop_price=_given(stop_price),
        expire_time=_given(good_till), display_qty=_given(iceberg_qty))
    default = "FULL" if kind in ("LIMIT", "MARKET") else "ACK"
    return place, resp or default, quote_qty


def _given(value: T | None) -> T | msgspec.UnsetType:
    """An optional parameter as ``PlaceParams`` takes it: UNSET when not sent."""
    return msgspec.UNSET if value is None else value


def _limit_tif(kind: str, tif: str | None) -> str:
    """The ``timeInForce`` of an order with a limit price: mandatory for LIMIT and the
    *_LIMIT types; a LIMIT_MAKER takes none (it is GTC) but GTD (with goodTillDate)."""
    if kind == "LIMIT_MAKER":
        if tif is None:
            return "GTC"
        if tif != "GTD":
            raise BinanceError(TIF_NOT_REQUIRED, f"{TIF_SENT} (a LIMIT_MAKER is GTC, or GTD "
                               "with goodTillDate)")
        return tif
    if tif is None:
        raise mandatory("timeInForce")
    if tif not in TIFS:
        raise BinanceError(INVALID_TIF, "Invalid timeInForce.")
    return tif


def _market_tif(kind: str, tif: str | None) -> str | None:
    """A market order's ``timeInForce``: none for MARKET (-1114, as on Binance); a
    STOP_LOSS / TAKE_PROFIT may carry GTD (its untriggered life) or FOK."""
    if tif is None:
        return None
    if kind == "MARKET":
        raise BinanceError(TIF_NOT_REQUIRED, TIF_SENT)
    if tif not in TIFS:
        raise BinanceError(INVALID_TIF, "Invalid timeInForce.")
    if tif not in STOP_MARKET_TIFS:
        raise BinanceError(TIF_NOT_REQUIRED, f"{TIF_SENT} ({kind} takes only GTD or FOK)")
    return tif


def _market_amount(ctx: ApiContext, kind: str, side: str | None, quantity: str | None,
                   quote_qty: str | None) -> None:
    """A MARKET (STOP_LOSS, TAKE_PROFIT) order's amount: ``quantity`` or (a buy under the
    risk stage) ``quoteOrderQty``, spent when a stop triggers."""
    if quantity is None and quote_qty is None:
        raise BinanceError(MANDATORY_PARAM, "Param 'quantity' or 'quoteOrderQty' must be "
                           "sent, but both were empty/null!")
    budget = ctx.risk and side == "BUY"
    if budget and quantity is not None:
        raise not_required("quantity", f" (a {kind} BUY takes quoteOrderQty: the most "
                           "quote to spend, fees included)")
    if not budget and quote_qty is not None:
        why = (f" (quoteOrderQty is for a {kind} BUY)" if ctx.risk
               else " (quoteOrderQty needs the risk stage)")
        raise not_required("quoteOrderQty", why)


async def new_order(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    account = req.signer.id
    market = ctx.symbols.market(params.required("symbol"))
    place, resp_type, quote_text = _place_params(ctx, market, params)
    outcomes = ctx.outcomes
    symbol, future = ctx.gateway.entry.place(account, place)
    outcomes.placing(symbol, account)
    try:
        order_id = await received(future, "order")
    except BinanceError:
        outcomes.place_failed(symbol, account)
        raise
    first = outcomes.placed(symbol, account, order_id)
    coid = place.client_order_id
    if resp_type == "ACK":
        return ack_json(market, order_id, coid, ts_of(order_id))
    reports = await answer(ctx, first, "order")
    last = reports[-1]
    if last.status == "rejected":
        raise rejected(last.reason)
    quote_units = None if quote_text is None else market.parse_quote(quote_text)
    trigger_ts = next((r.ts for r in reports if r.exec_type == "triggered"), None)
    state = state_of_report(last, place.post_only, place.stp, quote_units, trigger_ts)
    if resp_type == "RESULT":
        return result_json(market, state, last.ts)
    fills = [r for r in reports if r.exec_type == "trade"]
    return full_json(market, state, fills, last.ts)


def order_ref(params: Params) -> tuple[str | None, str | None, int | None]:
    """``orderId`` and/or ``origClientOrderId`` -> ``(order id, client id, orderId)``; -1102
    when neither is given. An ``orderId`` no order can have maps to ``"0-0"`` (never found)."""
    number = params.long("orderId")
    coid = client_order_id(params, "origClientOrderId", EMPTY_ORG_CL_ORD_ID)
    if number is None and coid is None:
        raise BinanceError(MANDATORY_PARAM, "Param 'origClientOrderId' or 'orderId' must be "
                           "sent, but both were empty/null!")
    order_id = None
    if number is not None:
        try:
            order_id = order_id_of_number(number)
        except ValueError:
            order_id = "0-0"  # no order has it
    return order_id, coid, number


async def open_order(ctx: ApiContext, market: Market, account: str, order_id: str | None,
                     coid: str | None) -> Report | None:
    """The account's open order in the live view; a place of this process still in flight
    is waited for (bounded by :data:`PENDING_WAIT_S`) first."""
    view = ctx.gateway.view
    report = view.find(market.symbol, account, order_id, coid)
    if report is None and order_id is not None:
        pending = ctx.outcomes.pending_place(market.symbol, order_id)
        if pending is not None:
            await asyncio.wait({pending}, timeout=PENDING_WAIT_S)
            report = view.find(market.symbol, account, order_id, coid)
    return report


async def cancel_order(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    account = req.signer.id
    market = ctx.symbols.market(params.required("symbol"))
    order_id, coid, _ = order_ref(params)
    cancel_id = client_order_id(params, "newClientOrderId", EMPTY_NEW_CL_ORD_ID)
    restriction = params.enum("cancelRestrictions", ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"),
                              error=BinanceError(INVALID_CANCEL_RESTRICTIONS,
                                                 "Invalid cancelRestrictions"))
    params.finish()
    report = await open_order(ctx, market, account, order_id, coid)
    if report is None:
        raise BinanceError(CANCEL_REJECTED, UNKNOWN_ORDER_SENT)
    # Binance's status: an untriggered stop is NEW.
    if restriction is not None and STATUSES[report.status] != restriction[len("ONLY_"):]:
        raise BinanceError(CANCEL_REJECTED, "Order was not canceled due to cancel "
                           "restrictions.")
    state = await _cancel(ctx, market, account, report)
    if state is None:
        raise BinanceError(CANCEL_REJECTED, UNKNOWN_ORDER_SENT)
    out = cancel_json(market, state, report.client_order_id, ctx.now_ms())
    out["clientOrderId"] = cancel_id or new_client_order_id()
    return out


async def _cancel(ctx: ApiContext, market: Market, account: str, report: Report
                  ) -> OrderState | None:
    """Cancel one open order; its canceled state, or None when it ended otherwise."""
    outcomes = ctx.outcomes
    symbol = market.symbol
    outcome = outcomes.canceling(symbol, account, report.order_id)
    try:
        future = ctx.gateway.entry.request(
            account, CancelParams(symbol=symbol, order_id=report.order_id))
    except StreamexError as exc:
        outcomes.discard(symbol, report.order_id, outcome)
        raise from_streamex(exc, cancel=True) from None
    try:
        await received(future, "cancel")
    except BinanceError:
        outcomes.discard(symbol, report.order_id, outcome)
        raise
    result = await answer(ctx, outcome, "cancel")
    if isinstance(result, CancelRejected) or result.status != "canceled":
        return None
    return state_of_report(result)


async def cancel_open_orders(ctx: ApiContext, req: ApiRequest) -> Any:
    """Cancel every open order of the account in the market (one ``cancel_all``); the list of
    those canceled. -2011 when there is none."""
    params = req.params
    account = req.signer.id
    market = ctx.symbols.market(params.required("symbol"))
    params.finish()
    symbol = market.symbol
    orders = [r for _, r in ctx.gateway.view.open_orders(account, symbol)]
    if not orders:
        raise BinanceError(CANCEL_REJECTED, UNKNOWN_ORDER_SENT)
    outcomes = ctx.outcomes
    waiting = [(r, outcomes.canceling(symbol, account, r.order_id)) for r in orders]
    try:
        future = ctx.gateway.entry.request(account, SymbolParams(symbol=symbol))
    except StreamexError as exc:
        for r, outcome in waiting:
            outcomes.discard(symbol, r.order_id, outcome)
        raise from_streamex(exc, cancel=True) from None
    await received(future, "cancel")
    now = ctx.now_ms()
    canceled = []
    for r, outcome in waiting:
        result = await answer(ctx, outcome, "cancel")
        if isinstance(result, Report) and result.status == "canceled":
            out = cancel_json(market, state_of_report(result), r.client_order_id, now)
            out["clientOrderId"] = new_client_order_id()
            canceled.append(out)
    return canceled

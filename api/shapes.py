"""Binance's response shapes, built from streamex's markets, reports and history rows.

The names Binance clients read: a market ``BTC-USD`` is the symbol
``BTCUSD`` (:func:`binance_symbol`); an order id is the integer ``orderId``
``contract.ids.order_number(order_id)``; statuses, types, sides, time in
force and self-trade prevention modes are Binance's enums (upper case, an
order ended by self-trade prevention is ``EXPIRED_IN_MATCH``; ``stop_limit`` is
``STOP_LOSS_LIMIT``, ``stop_market`` ``STOP_LOSS``, the take-profits
``TAKE_PROFIT_LIMIT``/``TAKE_PROFIT``; an untriggered stop is ``NEW`` and not
working until its trigger); prices, quantities and amounts are decimal
strings with the market's decimals (``contract.market``), commissions in the
quote asset as streamex charges them. Each function returns plain dicts and
lists ready to encode. No I/O; O(size of the answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from api.errors import invalid_symbol
from candles.core import Candle, Stats24h
from contract.commands import LIMIT_TYPES, STOP_TYPES
from contract.errors import STP
from contract.events import Report
from contract.ids import order_number, ts_of
from contract.market import Market, format_units
from contract.settings import LimitsConfig

STATUSES = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
            "canceled": "CANCELED", "expired": "EXPIRED", "rejected": "REJECTED",
            "untriggered": "NEW"}
"""streamex's ``status`` -> Binance's (an untriggered stop is NEW, not yet working)."""
STP_MODES = {"none": "NONE", "cancel_taker": "EXPIRE_TAKER", "cancel_maker": "EXPIRE_MAKER",
             "cancel_both": "EXPIRE_BOTH"}
"""streamex's ``stp`` -> Binance's ``selfTradePreventionMode``."""
STP_OF_BINANCE = {v: k for k, v in STP_MODES.items()}
STOP_TYPES_OF_BINANCE = {"STOP_LOSS": "stop_market", "STOP_LOSS_LIMIT": "stop_limit",
                         "TAKE_PROFIT": "take_profit_market",
                         "TAKE_PROFIT_LIMIT": "take_profit_limit"}
"""Binance's stop and take-profit types -> streamex's ``type``."""
TYPE_OF_BINANCE = {"LIMIT": "limit", "LIMIT_MAKER": "limit", "MARKET": "market",
                   **STOP_TYPES_OF_BINANCE}
"""Every Binance order type served -> streamex's ``type`` (LIMIT_MAKER: post-only)."""
BINANCE_TYPES = {"limit": "LIMIT", "market": "MARKET",
                 **{v: k for k, v in STOP_TYPES_OF_BINANCE.items()}}
"""streamex's ``type`` -> Binance's (a post-only limit is LIMIT_MAKER where known)."""
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
               "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
"""The order types ``exchangeInfo`` lists, in Binance's order."""


def binance_symbol(symbol: str) -> str:
    """``BTC-USD`` -> ``BTCUSD``."""
    return symbol.replace("-", "")


class Symbols:
    """The listed markets by Binance symbol; raises ValueError when two markets share one."""

    def __init__(self, markets: Iterable[Market]) -> None:
        self.by_binance: dict[str, Market] = {}
        for m in markets:
            name = binance_symbol(m.symbol)
            if name in self.by_binance:
                raise ValueError(f"markets: {m.symbol} and {self.by_binance[name].symbol} "
                                 f"are both {name} on REST")
            self.by_binance[name] = m

    def market(self, name: str) -> Market:
        """The market whose Binance symbol is ``name``; -1121 otherwise. O(1)."""
        market = self.by_binance.get(name)
        if market is None:
            raise invalid_symbol()
        return market


class OrderState(NamedTuple):
    """An order as REST states it: from the live view's latest report or a history row."""

    order_id: str
    client_order_id: str | None
    side: str
    type: str
    tif: str
    price: int
    qty: int
    cum_qty: int
    cum_notional: int
    status: str
    reason: str | None
    time: int
    update_time: int
    post_only: bool | None = None
    stp: str | None = None
    quote_qty: int | None = None
    stop_price: int = 0
    """A stop's trigger (ticks); 0 for other orders."""
    expire_time: int = 0
    """A GTD order's end (ms); 0 otherwise."""
    display_qty: int = 0
    """An iceberg's shown slice (lots); 0 when the whole order shows."""
    trigger_ts: int | None = None
    """When a stop triggered (None: not triggered, or not a stop)."""


def state_of_report(r: Report, post_only: bool | None = None, stp: str | None = None,
                    quote_qty: int | None = None, trigger_ts: int | None = None
                    ) -> OrderState:
    """The order as its latest engine ``Report`` leaves it; ``trigger_ts`` is a stop's
    trigger time when the caller knows it (a ``triggered`` report states its own)."""
    if trigger_ts is None and r.exec_type == "triggered":
        trigger_ts = r.ts
    return OrderState(r.order_id, r.client_order_id, r.side, r.type, r.tif, r.price, r.qty,
                      r.cum_qty, r.cum_notional, r.status, r.reason, ts_of(r.order_id), r.ts,
                      post_only, stp, quote_qty, r.stop_price, r.expire_time, r.display_qty,
                      trigger_ts)


def status_of(state: OrderState) -> str:
    if state.reason == STP and state.status in ("expired", "canceled"):
        return "EXPIRED_IN_MATCH"
    return STATUSES[state.status]


def _order_type(state: OrderState) -> str:
    if state.type == "limit" and state.post_only:
        return "LIMIT_MAKER"
    return BINANCE_TYPES[state.type]


def _time_in_force(state: OrderState) -> str:
    """Binance states a market order GTC (a LIMIT_MAKER is GTC by definition); a stop
    market's own GTD or FOK is kept (it is what decides its life)."""
    if state.type in LIMIT_TYPES:
        return state.tif
    if state.type != "market" and state.tif in ("GTD", "FOK"):
        return state.tif
    return "GTC"


def working(state: OrderState) -> tuple[bool, int]:
    """Binance's ``(isWorking, workingTime)``: an order works from when it was received; a
    stop from its trigger (``(False, -1)`` while untriggered, and when it ended without
    triggering)."""
    if state.type not in STOP_TYPES:
        return True, state.time
    if state.status == "untriggered" or state.trigger_ts is None:
        return False, -1
    return True, state.trigger_ts


def _conditional(market: Market, state: OrderState) -> dict[str, Any]:
    """The fields a placement or cancel answer carries only where the order has them
    (Binance's "conditional fields"): ``stopPrice``, ``icebergQty``, ``goodTillDate``."""
    out: dict[str, Any] = {}
    if state.stop_price:
        out["stopPrice"] = market.format_price(state.stop_price)
    if state.display_qty:
        out["icebergQty"] = market.format_qty(state.display_qty)
    if state.expire_time:
        out["goodTillDate"] = state.expire_time
    return out


def _order_core(market: Market, state: OrderState) -> dict[str, Any]:
    return {
        "symbol": binance_symbol(market.symbol),
        "orderId": order_number(state.order_id),
        "orderListId": -1,
        "clientOrderId": state.client_order_id or "",
    }


def _order_amounts(market: Market, state: OrderState) -> dict[str, Any]:
    quote_units = state.cum_notional * market.quote_per_tick_lot
    return {
        "price": market.format_price(state.price),
        "origQty": market.format_qty(state.qty),
        "executedQty": market.format_qty(state.cum_qty),
        "origQuoteOrderQty": market.format_quote(state.quote_qty or 0),
        "cummulativeQuoteQty": market.format_quote(quote_units),
        "status": status_of(state),
        "timeInForce": _time_in_force(state),
        "type": _order_type(state),
        "side": state.side.upper(),
    }


def _stp(state: OrderState) -> dict[str, Any]:
    return {} if state.stp is None else {"selfTradePreventionMode": STP_MODES[state.stp]}


def order_json(market: Market, state: OrderState) -> dict[str, Any]:
    """An order as ``GET /api/v3/order``, ``openOrders`` and ``allOrders`` give it:
    ``stopPrice`` and ``icebergQty`` always (zeros where none), ``goodTillDate`` (0 unless
    GTD, as Binance's futures API gives it), ``isWorking``/``workingTime`` (:func:`working`)."""
    out = _order_core(market, state)
    amounts = _order_amounts(market, state)
    is_working, working_time = working(state)
    out.update(
        price=amounts["price"], origQty=amounts["origQty"],
        executedQty=amounts["executedQty"],
        cummulativeQuoteQty=amounts["cummulativeQuoteQty"], status=amounts["status"],
        timeInForce=amounts["timeInForce"], type=amounts["type"], side=amounts["side"],
        stopPrice=market.format_price(state.stop_price),
        icebergQty=market.format_qty(state.display_qty),
        time=state.time, updateTime=state.update_time,
        isWorking=is_working, workingTime=working_time,
        origQuoteOrderQty=amounts["origQuoteOrderQty"], goodTillDate=state.expire_time)
    out.update(_stp(state))
    return out


def ack_json(market: Market, order_id: str, client_order_id: str | None,
             transact_time: int) -> dict[str, Any]:
    """``newOrderRespType=ACK``: the order is in the system's input stream."""
    return {"symbol": binance_symbol(market.symbol), "orderId": order_number(order_id),
            "orderListId": -1, "clientOrderId": client_order_id or "",
            "transactTime": transact_time}


def result_json(market: Market, state: OrderState, transact_time: int) -> dict[str, Any]:
    """``newOrderRespType=RESULT``: the order after its first engine command."""
    out = _order_core(market, state)
    out["transactTime"] = transact_time
    out.update(_order_amounts(market, state))
    out["workingTime"] = working(state)[1]
    out.update(_conditional(market, state))
    out.update(_stp(state))
    return out


def full_json(market: Market, state: OrderState, fills: Sequence[Report],
              transact_time: int) -> dict[str, Any]:
    """``newOrderRespType=FULL``: RESULT plus the fills of that first command."""
    out = result_json(market, state, transact_time)
    out["fills"] = [fill_json(market, r) for r in fills]
    return out


def fill_json(market: Market, r: Report) -> dict[str, Any]:
    """One fill of a FULL answer, from its ``trade`` report."""
    return {"price": market.format_price(r.last_price), "qty": market.format_qty(r.last_qty),
            "commission": market.format_quote(r.fee), "commissionAsset": market.quote,
            "tradeId": r.trade_id}


def cancel_json(market: Market, state: OrderState, orig_client_order_id: str | None,
                transact_time: int) -> dict[str, Any]:
    """``DELETE /api/v3/order`` (and each entry of ``DELETE /api/v3/openOrders``)."""
    out = {"symbol": binance_symbol(market.symbol),
           "origClientOrderId": orig_client_order_id or state.client_order_id or "",
           "orderId": order_number(state.order_id), "orderListId": -1,
           "clientOrderId": state.client_order_id or "", "transactTime": transact_time}
    out.update(_order_amounts(market, state))
    out.update(_conditional(market, state))
    out.update(_stp(state))
    return out


def my_trade_json(market: Market, trade_id: int, order_id: str, price: int, qty: int,
                  fee: int, ts: int, side: str, maker: bool) -> dict[str, Any]:
    """One of the account's fills, as ``GET /api/v3/myTrades`` gives it."""
    return {"symbol": binance_symbol(market.symbol), "id": trade_id,
            "orderId": order_number(order_id), "orderListId": -1,
            "price": market.format_price(price), "qty": market.format_qty(qty),
            "quoteQty": market.format_quote(market.notional(price, qty)),
            "commission": market.format_quote(fee), "commissionAsset": market.quote,
            "time": ts, "isBuyer": side == "buy", "isMaker": maker, "isBestMatch": True}


def trade_json(market: Market, trade_id: int, price: int, qty: int, taker_side: str,
               ts: int) -> dict[str, Any]:
    """A public trade, as ``GET /api/v3/trades`` gives it."""
    return {"id": trade_id, "price": market.format_price(price),
            "qty": market.format_qty(qty),
            "quoteQty": market.format_quote(market.notional(price, qty)), "time": ts,
            "isBuyerMaker": taker_side == "sell", "isBestMatch": True}


def agg_trade_json(market: Market, trade_id: int, price: int, qty: int, taker_side: str,
                   ts: int) -> dict[str, Any]:
    """A public trade as one aggregate trade of ``GET /api/v3/aggTrades`` (one per trade)."""
    return {"a": trade_id, "p": market.format_price(price), "q": market.format_qty(qty),
            "f": trade_id, "l": trade_id, "T": ts, "m": taker_side == "sell", "M": True}


def kline_json(market: Market, c: Candle) -> list[Any]:
    """Binance's kline array; the taker-buy volumes are not kept (``"0"`` amounts)."""
    return [c.open_time, market.format_price(c.open), market.format_price(c.high),
            market.format_price(c.low), market.format_price(c.close),
            market.format_qty(c.volume), c.close_time,
            market.format_quote(c.quote_volume * market.quote_per_tick_lot), c.trades,
            market.format_qty(0), market.format_quote(0), "0"]


def _level(market: Market, level: tuple[int, int] | None) -> tuple[str, str]:
    if level is None:
        return market.format_price(0), market.format_qty(0)
    return market.format_price(level[0]), market.format_qty(level[1])


def book_ticker_json(market: Market, bid: tuple[int, int] | None,
                     ask: tuple[int, int] | None) -> dict[str, Any]:
    """``GET /api/v3/ticker/bookTicker``: best bid and ask (zeros for an empty side)."""
    bid_price, bid_qty = _level(market, bid)
    ask_price, ask_qty = _level(market, ask)
    return {"symbol": binance_symbol(market.symbol), "bidPrice": bid_price, "bidQty": bid_qty,
            "askPrice": ask_price, "askQty": ask_qty}


def price_ticker_json(market: Market, last: tuple[int, int] | None) -> dict[str, Any]:
    """``GET /api/v3/ticker/price``: the last trade's price (zero before any trade)."""
    return {"symbol": binance_symbol(market.symbol),
            "price": market.format_price(0 if last is None else last[0])}


def ticker_24h_json(market: Market, stats: Stats24h | None, last_trade_id: int,
                    last: tuple[int, int] | None, bid: tuple[int, int] | None,
                    ask: tuple[int, int] | None, open_time: int, close_time: int,
                    mini: bool = False) -> dict[str, Any]:
    """``GET /api/v3/ticker/24hr`` from the rolling statistics of ``candles.core``.

    ``openTime``..``closeTime`` is the window; trade ids are contiguous per market, so
    ``firstId`` is ``lastId - count + 1`` (-1 both without a trade in the window).
    ``prevClosePrice`` is the window's open price.
    """
    fp, fq = market.format_price, market.format_qty
    if stats is None:
        open_ = high = low = close = volume = notional = count = 0
    else:
        open_, high, low, close = stats.open, stats.high, stats.low, stats.last
        volume, notional, count = stats.volume, stats.quote_volume, stats.trades
    quote_volume = market.format_quote(notional * market.quote_per_tick_lot)
    first_id, last_id = ((last_trade_id - count + 1, last_trade_id) if count
                         else (-1, -1))
    out: dict[str, Any] = {"symbol": binance_symbol(market.symbol)}
    if not mini:
        change = close - open_
        percent = "0.000" if not open_ else f"{change * 100 / open_:.3f}"
        weighted = fp(0) if not volume else market.format_avg_price(notional, volume)
        bid_price, bid_qty = _level(market, bid)
        ask_price, ask_qty = _level(market, ask)
        out.update(priceChange=fp(change) if change >= 0 else "-" + fp(-change),
                   priceChangePercent=percent, weightedAvgPrice=weighted,
                   prevClosePrice=fp(open_), lastPrice=fp(close),
                   lastQty=fq(0 if last is None else last[1]), bidPrice=bid_price,
                   bidQty=bid_qty, askPrice=ask_price, askQty=ask_qty)
    out.update(openPrice=fp(open_), highPrice=fp(high), lowPrice=fp(low))
    if mini:
        out["lastPrice"] = fp(close)
    out.update(volume=fq(volume), quoteVolume=quote_volume, openTime=open_time,
               closeTime=close_time, firstId=first_id, lastId=last_id, count=count)
    return out


def _filters(market: Market) -> list[dict[str, Any]]:
    min_notional = market.notional(market.min_ticks, market.min_lots)
    max_notional = market.notional(market.max_ticks, market.max_lots)
    return [
        {"filterType": "PRICE_FILTER", "minPrice": market.min_price,
         "maxPrice": market.max_price, "tickSize": market.tick_size},
        {"filterType": "LOT_SIZE", "minQty": market.min_qty, "maxQty": market.max_qty,
         "stepSize": market.lot_size},
        {"filterType": "MARKET_LOT_SIZE", "minQty": market.min_qty,
         "maxQty": market.max_qty, "stepSize": market.lot_size},
        {"filterType": "NOTIONAL", "minNotional": market.format_quote(min_notional),
         "applyMinToMarket": False, "maxNotional": market.format_quote(max_notional),
         "applyMaxToMarket": False, "avgPriceMins": 0},
    ]


def symbol_json(market: Market, risk: bool) -> dict[str, Any]:
    """One ``symbols`` entry of ``exchangeInfo``."""
    return {
        "symbol": binance_symbol(market.symbol), "status": "TRADING",
        "baseAsset": market.base, "baseAssetPrecision": market.base_units,
        "quoteAsset": market.quote, "quotePrecision": market.quote_units,
        "quoteAssetPrecision": market.quote_units,
        "baseCommissionPrecision": market.base_units,
        "quoteCommissionPrecision": market.quote_units,
        "orderTypes": list(ORDER_TYPES), "icebergAllowed": True, "ocoAllowed": False,
        "otoAllowed": False, "opoAllowed": False, "quoteOrderQtyMarketAllowed": risk,
        "allowTrailingStop": False, "cancelReplaceAllowed": False, "amendAllowed": False,
        "pegInstructionsAllowed": False, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "filters": _filters(market),
        "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
        "allowedSelfTradePreventionModes": list(STP_MODES.values()),
    }


def exchange_info_json(markets: Iterable[Market], server_time: int, limits: LimitsConfig,
                       risk: bool) -> dict[str, Any]:
    """``GET /api/v3/exchangeInfo`` of ``markets``; ``rateLimits`` are the gateway's limits
    (requests per IP, orders per account, each per second)."""
    return {
        "timezone": "UTC", "serverTime": server_time,
        "rateLimits": [
            {"rateLimitType": "RAW_REQUESTS", "interval": "SECOND", "intervalNum": 1,
             "limit": int(limits.connection_rate)},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1,
             "limit": int(limits.account_rate)},
        ],
        "exchangeFilters": [],
        "symbols": [symbol_json(m, risk) for m in markets],
    }


def balances_json(rows: Iterable[tuple[str, int, int]],
                  units: Mapping[str, int]) -> list[dict[str, str]]:
    """``balances`` of ``GET /api/v3/account``: ``free`` = available, ``locked`` = held."""
    return [{"asset": asset, "free": format_units(available, units[asset]),
             "locked": format_units(held, units[asset])} for asset, available, held in rows]


def rate_text(num: int, den: int) -> str:
    """A fee fraction ``num / den`` with Binance's 8 decimals (rounded up)."""
    return format_units(-(-num * 10**8 // den), 8)

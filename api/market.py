"""The public endpoints: ping, time, exchange information, book, trades, klines, tickers.

Book, best bid/ask and last trade come from the live books (``api.books``:
no I/O, O(levels)); trades, klines and the 24-hour statistics from the
history database (``api.history``: one or two index ranges in a worker
thread). The 24-hour window is exactly ``candles.core``'s (the 1,440
one-minute buckets ending with the current one, ``Rolling24h``), so REST and
the market-data feed agree. Also here: what ccxt's ``load_markets`` asks of
products streamex does not have (futures, options), answered as Binance
answers an account without them. Each handler reads its parameters, calls
``params.finish()``, and returns the JSON body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from api.context import ApiContext, ApiRequest
from api.errors import (
    BAD_INTERVAL,
    INVALID_SYMBOL_STATUS,
    MORE_THAN_XX_HOURS,
    OPTIONAL_PARAMS_BAD_COMBO,
    SYMBOL_STATUS_MISMATCH,
    BinanceError,
    illegal_chars,
    invalid_parameter,
)
from api.params import Params
from api.shapes import (
    agg_trade_json,
    book_ticker_json,
    exchange_info_json,
    kline_json,
    price_ticker_json,
    ticker_24h_json,
    trade_json,
)
from candles.core import INTERVALS, Rolling24h, window_start
from contract.market import Market
from marketdata.feed import MarketFeed

DEPTH_DEFAULT = 100
DEPTH_MAX = 5000
TRADES_DEFAULT = 500
TRADES_MAX = 1000
KLINES_DEFAULT = 500
KLINES_MAX = 1000
HOUR_MS = 3_600_000
_SYMBOLS = msgspec.json.Decoder(list[str])
_SYMBOLS_RANGE = r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$'
_STATUSES = ("TRADING", "HALT", "BREAK")


def _market(ctx: ApiContext, params: Params) -> Market:
    return ctx.symbols.market(params.required("symbol"))


async def _feed(ctx: ApiContext, market: Market) -> MarketFeed:
    """The market's live feed, caught up with what the order router has read."""
    return await ctx.books.fresh(market.symbol, ctx.gateway.view.last_seq(market.symbol))


def _limit(params: Params, default: int, maximum: int) -> int:
    """``limit`` in ``1..maximum`` (a larger one is cut to ``maximum``, as Binance's)."""
    limit = params.long("limit", low=1)
    return default if limit is None else min(limit, maximum)


def _markets(ctx: ApiContext, params: Params, *, status: bool = True) -> list[Market] | None:
    """``symbol`` or ``symbols`` (a JSON array) or neither (None: every market), -1121 for a
    symbol not listed; with ``status``, ``symbolStatus`` too (only TRADING has symbols)."""
    one = params.text("symbol")
    many = params.text("symbols")
    if one is not None and many is not None:
        raise BinanceError(OPTIONAL_PARAMS_BAD_COMBO, "Combination of optional parameters "
                           "invalid. ('symbol' and 'symbols')")
    wanted: list[Market] | None = None
    if one is not None:
        wanted = [ctx.symbols.market(one)]
    elif many is not None:
        try:
            names = _SYMBOLS.decode(many)
        except msgspec.DecodeError:
            raise illegal_chars("symbols", _SYMBOLS_RANGE) from None
        wanted = [ctx.symbols.market(n) for n in dict.fromkeys(names)]
    if status:
        state = params.enum("symbolStatus", _STATUSES,
                            error=BinanceError(INVALID_SYMBOL_STATUS, "Invalid symbolStatus."))
        if state is not None and state != "TRADING":
            return []
    return wanted


def _all(ctx: ApiContext, wanted: list[Market] | None) -> list[Market]:
    return list(ctx.config.markets) if wanted is None else wanted


def _one_or_list(wanted: list[Market] | None, params: Params, items: list[Any]) -> Any:
    """A single object when ``symbol`` was given, else the list (Binance's rule)."""
    return items[0] if wanted is not None and "symbol" in params and items else items


# -- general ----------------------------------------------------------------------------


async def ping(ctx: ApiContext, req: ApiRequest) -> Any:
    req.params.finish()
    return {}


async def server_time(ctx: ApiContext, req: ApiRequest) -> Any:
    req.params.finish()
    return {"serverTime": ctx.now_ms()}


async def exchange_info(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    wanted = _markets(ctx, params)
    permissions = params.text("permissions")
    params.boolean("showPermissionSets")
    params.finish()
    markets = _all(ctx, wanted)
    if permissions is not None:
        try:
            asked = ([permissions] if not permissions.startswith("[")
                     else _SYMBOLS.decode(permissions))
        except msgspec.DecodeError:
            raise invalid_parameter("permissions") from None
        if "SPOT" not in asked:
            markets = []
    return exchange_info_json(markets, ctx.now_ms(), ctx.config.limits, ctx.risk)


async def empty_product_info(ctx: ApiContext, req: ApiRequest) -> Any:
    """``/fapi|dapi/v1/exchangeInfo``: a product streamex does not have, with no symbols."""
    return {"timezone": "UTC", "serverTime": ctx.now_ms(), "rateLimits": [],
            "exchangeFilters": [], "assets": [], "symbols": []}


async def empty_options_info(ctx: ApiContext, req: ApiRequest) -> Any:
    """``/eapi/v1/exchangeInfo``: no options."""
    return {"timezone": "UTC", "serverTime": ctx.now_ms(), "optionContracts": [],
            "optionAssets": [], "optionSymbols": [], "rateLimits": []}


async def empty_list(ctx: ApiContext, req: ApiRequest) -> Any:
    """An account without the product: e.g. ``sapi`` coin and margin lists."""
    return []


# -- book -------------------------------------------------------------------------------


async def depth(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    market = _market(ctx, params)
    limit = _limit(params, DEPTH_DEFAULT, DEPTH_MAX)
    _markets_status(params)
    params.finish()
    feed = await _feed(ctx, market)
    book, fmt = feed.book, feed.fmt
    return {"lastUpdateId": feed.seq, "bids": fmt.levels(book.top("buy", limit)),
            "asks": fmt.levels(book.top("sell", limit))}


def _markets_status(params: Params) -> None:
    state = params.enum("symbolStatus", _STATUSES,
                        error=BinanceError(INVALID_SYMBOL_STATUS, "Invalid symbolStatus."))
    if state is not None and state != "TRADING":
        raise BinanceError(SYMBOL_STATUS_MISMATCH, "The symbol's status does not match the "
                           "requested symbolStatus.")


async def book_ticker(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    wanted = _markets(ctx, params)
    params.finish()
    items = []
    for market in _all(ctx, wanted):
        book = (await _feed(ctx, market)).book
        items.append(book_ticker_json(market, book.best("buy"), book.best("sell")))
    return _one_or_list(wanted, params, items)


async def price_ticker(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    wanted = _markets(ctx, params)
    params.finish()
    items = [price_ticker_json(m, (await _feed(ctx, m)).last_trade)
             for m in _all(ctx, wanted)]
    return _one_or_list(wanted, params, items)


async def ticker_24h(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    wanted = _markets(ctx, params)
    mini = params.enum("type", ("FULL", "MINI")) == "MINI"
    params.finish()
    history = ctx.require_history()
    now = ctx.now_ms()
    start = window_start(now)
    items = []
    for market in _all(ctx, wanted):
        minutes = await history.read(history.store.minute_candles, market.symbol, start)
        rolling = Rolling24h()
        rolling.load(minutes)
        feed = await _feed(ctx, market)
        book = feed.book
        items.append(ticker_24h_json(market, rolling.stats(now), feed.trade_id,
                                     feed.last_trade, book.best("buy"), book.best("sell"),
                                     start, now, mini))
    return _one_or_list(wanted, params, items)


# -- trades and klines ------------------------------------------------------------------


def _time(params: Params, name: str) -> int | None:
    """A ``startTime``/``endTime`` in ms (µs when it has 16 digits)."""
    value = params.long(name)
    if value is not None and value >= 10**15:
        value //= 1000
    return value


def _range(params: Params, span_ms: int | None = None) -> tuple[int | None, int | None]:
    start, end = _time(params, "startTime"), _time(params, "endTime")
    if start is not None and end is not None:
        if start > end:
            raise invalid_parameter("startTime", " (after endTime)")
        if span_ms is not None and end - start > span_ms:
            raise BinanceError(MORE_THAN_XX_HOURS, f"More than {span_ms // HOUR_MS} hours between "
                               "startTime and endTime.")
    return start, end


async def recent_trades(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    market = _market(ctx, params)
    limit = _limit(params, TRADES_DEFAULT, TRADES_MAX)
    params.finish()
    history = ctx.require_history()
    rows = await history.read(history.store.last_trades, market.symbol, limit)
    return [trade_json(market, t.trade_id, t.price, t.qty, t.taker_side, t.ts) for t in rows]


async def historical_trades(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    market = _market(ctx, params)
    limit = _limit(params, TRADES_DEFAULT, TRADES_MAX)
    from_id = params.long("fromId")
    params.finish()
    history = ctx.require_history()
    rows = await history.read(history.store.trades, market.symbol, from_trade_id=from_id,
                              limit=limit)
    return [trade_json(market, t.trade_id, t.price, t.qty, t.taker_side, t.ts) for t in rows]


async def agg_trades(ctx: ApiContext, req: ApiRequest) -> Any:
    """One aggregate trade per trade (``a`` = ``f`` = ``l`` = the trade id)."""
    params = req.params
    market = _market(ctx, params)
    limit = _limit(params, TRADES_DEFAULT, TRADES_MAX)
    from_id = params.long("fromId")
    start, end = _range(params, HOUR_MS)
    params.finish()
    history = ctx.require_history()
    rows = await history.read(history.store.trades, market.symbol, from_trade_id=from_id,
                              start_ms=start, end_ms=end, limit=limit)
    return [agg_trade_json(market, t.trade_id, t.price, t.qty, t.taker_side, t.ts)
            for t in rows]


async def klines(ctx: ApiContext, req: ApiRequest) -> Any:
    params = req.params
    market = _market(ctx, params)
    interval = params.required("interval")
    if interval not in INTERVALS:
        raise BinanceError(BAD_INTERVAL, f"Invalid interval. (one of {', '.join(INTERVALS)})")
    start, end = _range(params)
    zone = params.text("timeZone")
    if zone is not None and zone not in ("0", "00:00", "+00:00", "0:00"):
        raise invalid_parameter("timeZone", " (only UTC, 0, is served)")
    limit = _limit(params, KLINES_DEFAULT, KLINES_MAX)
    params.finish()
    history = ctx.require_history()
    # Binance selects klines by open time; one that opened before startTime but holds it
    # is not included, as there.
    rows = await history.read(history.store.klines, market.symbol, interval, start_ms=start,
                              end_ms=end, limit=limit)
    return [kline_json(market, c) for c in rows]


"""Python client SDK for ``streamex api``, the Binance-compatible REST service (asyncio).

::

    async with RestClient("http://127.0.0.1:8003", api_key, secret) as rest:
        placed = await rest.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        stop = await rest.place("BTC-USD", "sell", "stop_limit", "0.5", "95.00",
                                stop_price="96.00", tif="GTD", good_till_date=expiry_ms)
        order = await rest.order("BTC-USD", placed.order_id)
        orders = await rest.orders("BTC-USD", start_ms=..., limit=100)
        fills = await rest.my_trades("BTC-USD", from_id=1)
        candles = await rest.candles("BTC-USD", "1m", limit=10)

Symbols are streamex's (``BTC-USD``; the client sends Binance's ``BTCUSD``);
orders are named by REST's integer ``orderId`` (:attr:`Order.order_id`;
:attr:`Order.streamex_order_id` is the websocket protocol's id of the same
order). Private calls are SIGNED as Binance's are: HMAC-SHA256 (the
account's secret) of the query string or form body, ``timestamp`` and
``recvWindow``, the key in ``X-MBX-APIKEY``. A refusal raises
:class:`RestError` with Binance's ``code`` and ``msg`` and the HTTP status
(``status >= 500``: the outcome is unknown, query before retrying).
Quantities and prices are decimal strings (``Decimal`` and ``int`` are
converted exactly; ``float`` is refused). Order types are streamex's
(``limit``, ``market``, ``stop_limit``, ``stop_market``, ``take_profit_limit``,
``take_profit_market``; the client sends Binance's LIMIT, MARKET,
STOP_LOSS_LIMIT, STOP_LOSS, TAKE_PROFIT_LIMIT, TAKE_PROFIT). Each call is one
HTTP request on a kept-alive connection.
"""

from __future__ import annotations

import time
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec

from contract.ids import order_id_of_number
from contract.signing import hmac_hex

__all__ = ["Account", "Balance", "Candle", "Fill", "MyTrade", "Order", "RestClient",
           "RestError", "Trade"]

Number = str | Decimal | int
T = TypeVar("T")
OrderKind = Literal["limit", "market", "stop_limit", "stop_market", "take_profit_limit",
                    "take_profit_market"]
BINANCE_TYPES = {"limit": "LIMIT", "market": "MARKET", "stop_limit": "STOP_LOSS_LIMIT",
                 "stop_market": "STOP_LOSS", "take_profit_limit": "TAKE_PROFIT_LIMIT",
                 "take_profit_market": "TAKE_PROFIT"}
"""streamex's order type -> Binance's ``type``."""


class RestError(Exception):
    """A refusal: Binance's ``code`` and ``msg``, the HTTP ``status``, ``retry_after_s``."""

    def __init__(self, code: int, msg: str, status: int, retry_after_s: int | None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after_s = retry_after_s


class _Binance(msgspec.Struct, rename="camel", frozen=True, gc=False):
    pass


class Fill(_Binance, frozen=True):
    """One fill of a placed order (``newOrderRespType=FULL``)."""

    price: str
    qty: str
    commission: str
    commission_asset: str
    trade_id: int


class Order(_Binance, frozen=True, kw_only=True):
    """An order as REST states it; ``fills`` only on a FULL placement answer.

    ``type`` is Binance's (``STOP_LOSS_LIMIT`` for a ``stop_limit``, ...). A stop's
    ``stop_price`` is its trigger (``"0"`` where none; the placement and cancel answers
    carry it only for a stop); ``iceberg_qty`` an iceberg's shown slice;
    ``good_till_date`` a GTD order's end (ms; 0 where none). An untriggered stop is
    ``status`` NEW with ``is_working`` False and ``working_time`` -1; once triggered
    ``working_time`` is the trigger time (None where the answer does not say).
    """

    symbol: str
    order_id: int
    client_order_id: str
    price: str = "0"
    orig_qty: str = "0"
    executed_qty: str = "0"
    cummulative_quote_qty: str = "0"
    status: str = "NEW"
    time_in_force: str = "GTC"
    type: str = "LIMIT"
    side: str = "BUY"
    stop_price: str = "0"
    iceberg_qty: str = "0"
    good_till_date: int = 0
    is_working: bool = True
    working_time: int | None = None
    time: int | None = None
    update_time: int | None = None
    transact_time: int | None = None
    fills: list[Fill] = []

    @property
    def streamex_order_id(self) -> str:
        """The order's id in the websocket protocol (``"<ms>-<n>"``)."""
        return order_id_of_number(self.order_id)


class MyTrade(_Binance, frozen=True):
    """One of the account's fills, with its commission (quote, as charged)."""

    symbol: str
    id: int
    order_id: int
    price: str
    qty: str
    quote_qty: str
    commission: str
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool


class Trade(_Binance, frozen=True):
    """A public trade."""

    id: int
    price: str
    qty: str
    quote_qty: str
    time: int
    is_buyer_maker: bool


class Candle(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A kline: Binance's array, by position."""

    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    close_time: int
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote_volume: str
    ignore: str


class Balance(msgspec.Struct, frozen=True, gc=False):
    asset: str
    free: str
    locked: str


class Account(_Binance, frozen=True, kw_only=True):
    maker_commission: int
    taker_commission: int
    can_trade: bool
    balances: list[Balance]


class _Error(msgspec.Struct):
    code: int = -1000
    msg: str = ""


_error = msgspec.json.Decoder(_Error)


def _decimal(value: Number, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise TypeError(f"{name}: give a decimal string, Decimal or int, not {type(value)}")
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _name(symbol: str) -> str:
    return symbol.replace("-", "")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RestClient:
    """One account's (or an anonymous) client of ``streamex api`` at ``base_url``."""

    def __init__(self, base_url: str, api_key: str | None = None, secret: str | None = None,
                 *, recv_window_ms: int = 5000, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._secret = secret
        self._recv_window = recv_window_ms
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- transport --------------------------------------------------------------------

    async def _request(self, method: str, path: str, params: dict[str, Any], *,
                       signed: bool = False) -> bytes:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        headers: dict[str, str] = {}
        if signed:
            if self._key is None or self._secret is None:
                raise ValueError("this call is SIGNED: give api_key and secret")
            stamp = f"timestamp={_now_ms()}&recvWindow={self._recv_window}"
            query = f"{query}&{stamp}" if query else stamp
            query += f"&signature={hmac_hex(self._secret, query)}"
            headers["X-MBX-APIKEY"] = self._key
        url = f"{self.base_url}{path}"
        body = None
        if method == "POST":
            body, headers["Content-Type"] = query, "application/x-www-form-urlencoded"
        elif query:
            url += f"?{query}"
        async with self._session.request(method, url, data=body, headers=headers) as reply:
            data = await reply.read()
            if reply.status != 200:
                error = _error.decode(data) if data.startswith(b"{") else _Error(msg=str(data))
                retry = reply.headers.get("Retry-After")
                raise RestError(error.code, error.msg, reply.status,
                                int(retry) if retry and retry.isdigit() else None)
            return data

    async def _get(self, path: str, kind: type[T], **params: Any) -> T:
        return msgspec.json.decode(await self._request("GET", path, params), type=kind)

    async def _signed(self, method: str, path: str, kind: type[T], **params: Any) -> T:
        return msgspec.json.decode(await self._request(method, path, params, signed=True),
                                   type=kind)

    # -- public -----------------------------------------------------------------------

    async def server_time(self) -> int:
        """The server's clock, ms."""
        return (await self._get("/api/v3/time", dict[str, int]))["serverTime"]

    async def depth(self, symbol: str, limit: int = 100) -> dict[str, Any]:
        """``{"lastUpdateId", "bids", "asks"}``, up to ``limit`` (5,000) levels a side."""
        return await self._get("/api/v3/depth", dict[str, Any], symbol=_name(symbol),
                               limit=limit)

    async def trades(self, symbol: str, *, from_id: int | None = None,
                     limit: int = 500) -> list[Trade]:
        """The latest public trades, or those from trade id ``from_id``."""
        if from_id is None:
            return await self._get("/api/v3/trades", list[Trade], symbol=_name(symbol),
                                   limit=limit)
        return await self._get("/api/v3/historicalTrades", list[Trade], symbol=_name(symbol),
                               fromId=from_id, limit=limit)

    async def candles(self, symbol: str, interval: str, *, start_ms: int | None = None,
                      end_ms: int | None = None, limit: int = 500) -> list[Candle]:
        """Klines of ``interval`` (1m, 5m, 15m, 1h, 4h, 1d) opening within the times."""
        return await self._get("/api/v3/klines", list[Candle], symbol=_name(symbol),
                               interval=interval, startTime=start_ms, endTime=end_ms,
                               limit=limit)

    async def ticker_24h(self, symbol: str) -> dict[str, Any]:
        """The rolling 24-hour statistics, best bid and ask, last trade."""
        return await self._get("/api/v3/ticker/24hr", dict[str, Any], symbol=_name(symbol))

    # -- trading ------------------------------------------------------------------------

    async def place(self, symbol: str, side: Literal["buy", "sell"], type: OrderKind,
                    qty: Number | None = None, price: Number | None = None, *,
                    tif: str | None = None, quote_qty: Number | None = None,
                    post_only: bool = False, client_order_id: str | None = None,
                    stop_price: Number | None = None, iceberg_qty: Number | None = None,
                    good_till_date: int | None = None,
                    response: Literal["ACK", "RESULT", "FULL"] = "FULL") -> Order:
        """Place an order; with FULL (default) or RESULT, the answer states it after the
        engine's first command on it (FULL: with its fills; an untriggered stop as
        untriggered); with ACK, once it is received.

        A market buy under the risk stage (and a stop or take-profit market buy) gives
        ``quote_qty`` (the most quote to spend, fees included) instead of ``qty``. The
        stop and take-profit types take ``stop_price``; ``iceberg_qty`` shows only that
        much of a resting limit order; ``tif="GTD"`` with ``good_till_date`` (ms) ends
        the order then. ``tif`` defaults to GTC for the limit types (a post-only order
        takes none but GTD, a stop or take-profit market GTD or FOK, a market order
        none)."""
        binance_type = "LIMIT_MAKER" if post_only else BINANCE_TYPES[type]
        time_in_force = None if post_only and tif == "GTC" else tif  # LIMIT_MAKER is GTC
        if tif is None and type in ("limit", "stop_limit", "take_profit_limit"):
            time_in_force = None if post_only else "GTC"
        params: dict[str, Any] = {
            "symbol": _name(symbol), "side": side.upper(), "type": binance_type,
            "quantity": None if qty is None else _decimal(qty, "qty"),
            "quoteOrderQty": None if quote_qty is None else _decimal(quote_qty, "quote_qty"),
            "price": None if price is None else _decimal(price, "price"),
            "stopPrice": None if stop_price is None else _decimal(stop_price, "stop_price"),
            "icebergQty": None if iceberg_qty is None else _decimal(iceberg_qty,
                                                                    "iceberg_qty"),
            "timeInForce": time_in_force, "goodTillDate": good_till_date,
            "newClientOrderId": client_order_id, "newOrderRespType": response}
        return await self._signed("POST", "/api/v3/order", Order, **params)

    async def cancel(self, symbol: str, order_id: int | None = None, *,
                     client_order_id: str | None = None) -> Order:
        """Cancel one open order (by ``orderId`` or client order id); the order canceled."""
        return await self._signed("DELETE", "/api/v3/order", Order, symbol=_name(symbol),
                                  orderId=order_id, origClientOrderId=client_order_id)

    async def cancel_all(self, symbol: str) -> list[Order]:
        """Cancel every open order of the account in ``symbol``; those canceled."""
        return await self._signed("DELETE", "/api/v3/openOrders", list[Order],
                                  symbol=_name(symbol))

    # -- queries ------------------------------------------------------------------------

    async def order(self, symbol: str, order_id: int | None = None, *,
                    client_order_id: str | None = None) -> Order:
        """One order, open or closed (what this service placed or canceled is found in its
        new state at once)."""
        return await self._signed("GET", "/api/v3/order", Order, symbol=_name(symbol),
                                  orderId=order_id, origClientOrderId=client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self._signed("GET", "/api/v3/openOrders", list[Order],
                                  symbol=None if symbol is None else _name(symbol))

    async def orders(self, symbol: str, *, from_id: int | None = None,
                     start_ms: int | None = None, end_ms: int | None = None,
                     limit: int = 500) -> list[Order]:
        """The account's orders, ascending by ``orderId``: from ``from_id``, created within
        ``start_ms``..``end_ms`` (at most 24 hours), or the latest ``limit``."""
        return await self._signed("GET", "/api/v3/allOrders", list[Order],
                                  symbol=_name(symbol), orderId=from_id, startTime=start_ms,
                                  endTime=end_ms, limit=limit)

    async def my_trades(self, symbol: str, *, from_id: int | None = None,
                        start_ms: int | None = None, end_ms: int | None = None,
                        order_id: int | None = None, limit: int = 500) -> list[MyTrade]:
        """The account's fills with their commissions, ascending by trade id."""
        return await self._signed("GET", "/api/v3/myTrades", list[MyTrade],
                                  symbol=_name(symbol), fromId=from_id, startTime=start_ms,
                                  endTime=end_ms, orderId=order_id, limit=limit)

    async def account(self) -> Account:
        """Balances (free = available, locked = held) and commission rates."""
        return await self._signed("GET", "/api/v3/account", Account)

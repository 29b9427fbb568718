"""Python client SDK for the streamex websocket services (asyncio).

Order entry::

    async with OrderClient.connect("ws://127.0.0.1:8001/") as client:
        await client.logon(api_key, secret)
        received = await client.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        async for report in client.executions():
            print(report.exec_type, report.status, report.cum_qty)

A stop or take-profit carries its trigger (``type="stop_limit"``,
``stop_price="95.00"``); it reports ``status="untriggered"`` until a trade
prints through it, then ``exec_type="triggered"``. ``tif="GTD"`` with
``expire_time`` (ms) ends an order at that time; ``display_qty`` makes an
iceberg. With the risk stage on, a market buy gives ``quote_qty`` (the most
quote to spend, fees included) instead of ``qty``, and balances are read with
``await client.balances()`` and followed with ``client.balance_updates()``
(or ``await client.next_balance()``); execution reports and balance updates
are queued apart, so both may be read at once.

Market data::

    async with MarketDataClient.connect("ws://127.0.0.1:8002/") as feed:
        await feed.subscribe("book", "BTC-USD", depth=10)
        async for push in feed:
            print(push["channel"], push["type"], push.get("seq"))

Every request method sends one JSON request and waits for its reply: the
typed result, or :class:`~contract.errors.StreamexError` ``(code, message)``
for an error reply (with ``retry_after_ms`` for RATE_LIMITED, ``reason``
and ``server_time`` for a failed logon). Requests may be issued concurrently (each has its own id).
If the connection closes, waiting calls raise
``websockets.exceptions.ConnectionClosed`` and the push iterators end.
Quantities and prices are decimal strings (``Decimal`` and ``int`` are
converted exactly; ``float`` is refused, it cannot be exact).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Generator
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contract.commands import OrderType
from contract.errors import StreamexError
from contract.market import Market
from contract.order_entry import AssetBalance, BalancesResult, BalanceUpdate, ExecutionReport
from contract.signing import sign
from contract.wire import ErrorBody

__all__ = [
    "AssetBalance",
    "BalanceUpdate",
    "ExecutionReport",
    "LogonResult",
    "MarketDataClient",
    "MarketInfo",
    "OrderClient",
    "Received",
    "StreamexError",
]

Number = str | Decimal | int
T = TypeVar("T")
C = TypeVar("C", bound="_Client")


class Received(msgspec.Struct, frozen=True):
    """An order durably in its market's stream; ``order_id`` identifies it from now on."""

    order_id: str
    client_order_id: str | None
    symbol: str
    status: str


class LogonResult(msgspec.Struct, frozen=True):
    account: str
    server_time: int


MarketInfo = Market
"""A listed market (the ``markets`` entry): its decimal fields and its arithmetic."""


class _Pong(msgspec.Struct):
    pong: int


class _Markets(msgspec.Struct):
    markets: list[MarketInfo]


class _Orders(msgspec.Struct):
    orders: list[ExecutionReport]


class _Incoming(msgspec.Struct):
    """Any frame from a service: a reply (``id``) or a push (``channel``)."""

    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ErrorBody | None = None
    channel: str | None = None


_incoming_decoder = msgspec.json.Decoder(_Incoming)
_encoder = msgspec.json.Encoder()
_CLOSED = object()


def _decimal(value: Number, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise TypeError(f"{name}: give a decimal string, Decimal or int, not {type(value)}")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


class _Client:
    """A websocket connection with request/reply matching and a queue of pushes."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int | str, asyncio.Future[msgspec.Raw]] = {}
        self._pushes: asyncio.Queue[Any] = asyncio.Queue()
        self._balance_pushes: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    def connect(cls: type[C], url: str, *, open_timeout: float = 10.0) -> _Connecting[C]:
        """Open a connection to ``url`` (``ws://host:port/``).

        ``client = await Client.connect(url)`` (then :meth:`close` it), or
        ``async with Client.connect(url) as client:`` (closed on exit).
        """
        return _Connecting(cls, url, open_timeout)

    @classmethod
    async def _open(cls: type[C], url: str, open_timeout: float) -> C:
        ws = await connect(url, open_timeout=open_timeout, max_size=2**24, compression=None)
        return cls(ws)

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self: C) -> C:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def request(self, method: str, params: dict[str, Any] | None = None) -> msgspec.Raw:
        """Send one request and return its raw JSON ``result``; raises StreamexError on error."""
        request_id = next(self._ids)
        future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params:
            message["params"] = params
        try:
            await self._ws.send(_encoder.encode(message).decode())
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def _call(self, method: str, params: dict[str, Any] | None, result_type: type[T]) -> T:
        raw = await self.request(method, params)
        return msgspec.json.decode(raw, type=result_type)

    async def ping(self) -> int:
        """Round trip; returns the server's clock (ms)."""
        return (await self._call("ping", None, _Pong)).pong

    async def markets(self) -> list[MarketInfo]:
        """The listed markets and their tick, lot and limits."""
        return (await self._call("markets", None, _Markets)).markets

    async def _read(self) -> None:
        closed: BaseException = ConnectionClosed(None, None)
        try:
            async for frame in self._ws:
                try:
                    message = _incoming_decoder.decode(frame)
                    if message.channel is not None:
                        push = self._push_of(frame)
                        queue = (self._balance_pushes if isinstance(push, BalanceUpdate)
                                 else self._pushes)
                        queue.put_nowait(push)
                        continue
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # not a frame of the protocol: ignore it
                future = self._waiting.get(message.id) if message.id is not None else None
                if future is None or future.done():
                    continue
                if (error := message.error) is not None:
                    future.set_exception(StreamexError(
                        error.code, error.message, retry_after_ms=error.retry_after_ms,
                        reason=error.reason, server_time=error.server_time))
                else:
                    future.set_result(message.result)
        except ConnectionClosed as exc:
            closed = exc
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(closed)
            self._pushes.put_nowait(_CLOSED)
            self._balance_pushes.put_nowait(_CLOSED)

    def _push_of(self, frame: str | bytes) -> Any:
        return msgspec.json.decode(frame)

    async def _next_push(self) -> Any:
        """The next push, or ``_CLOSED`` once the connection is gone (repeatable)."""
        item = await self._pushes.get()
        if item is _CLOSED:
            self._pushes.put_nowait(_CLOSED)
        return item

    async def _next_balance_push(self) -> Any:
        """The next ``balances`` push, or ``_CLOSED`` once the connection is gone."""
        item = await self._balance_pushes.get()
        if item is _CLOSED:
            self._balance_pushes.put_nowait(_CLOSED)
        return item


class _Connecting(Generic[C]):
    """Result of ``connect()``: await it for a client, or use it as ``async with``."""

    def __init__(self, cls: type[C], url: str, open_timeout: float) -> None:
        self._cls, self._url, self._open_timeout = cls, url, open_timeout
        self._client: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._cls._open(self._url, self._open_timeout).__await__()

    async def __aenter__(self) -> C:
        self._client = await self._cls._open(self._url, self._open_timeout)
        return self._client

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()


class _ExecutionPushIn(msgspec.Struct):
    channel: str
    data: ExecutionReport


_execution_decoder = msgspec.json.Decoder(_ExecutionPushIn)


class _BalancePushIn(msgspec.Struct):
    channel: str
    data: BalanceUpdate


_balance_decoder = msgspec.json.Decoder(_BalancePushIn)


class OrderClient(_Client):
    """Order-entry connection: log on, place/cancel/amend orders, read execution reports."""

    account: str | None = None

    async def logon(self, api_key: str, secret: str, cancel_on_disconnect: bool = False
                    ) -> LogonResult:
        """Sign the current time with ``secret`` and log on; later calls act for the account."""
        timestamp = time.time_ns() // 1_000_000
        result = await self._call("logon", {
            "api_key": api_key, "timestamp": timestamp,
            "signature": sign(secret, timestamp, api_key),
            "cancel_on_disconnect": cancel_on_disconnect,
        }, LogonResult)
        self.account = result.account
        return result

    async def place(self, symbol: str, side: Literal["buy", "sell"],
                    type: OrderType, qty: Number | None = None, price: Number | None = None,
                    *, tif: Literal["GTC", "IOC", "FOK", "GTD"] | None = None,
                    post_only: bool = False, client_order_id: str | None = None,
                    stp: Literal["cancel_taker", "cancel_maker", "cancel_both", "none"] | None
                    = None, quote_qty: Number | None = None, stop_price: Number | None = None,
                    expire_time: int | None = None, display_qty: Number | None = None
                    ) -> Received:
        """Place an order; returns once it is durably queued (its reports follow as pushes).

        Give ``qty``, except for a market (or stop/take-profit market) buy under the risk
        stage: ``quote_qty``, the most quote it may spend, fees included (the gateway
        refuses the other mixes). The stop and take-profit types take ``stop_price``, the
        trigger; ``tif="GTD"`` takes ``expire_time`` (ms since the epoch, in the future);
        ``display_qty`` makes a resting limit order an iceberg showing that much.
        """
        params: dict[str, Any] = {"symbol": symbol, "side": side, "type": type}
        if qty is not None:
            params["qty"] = _decimal(qty, "qty")
        if quote_qty is not None:
            params["quote_qty"] = _decimal(quote_qty, "quote_qty")
        if price is not None:
            params["price"] = _decimal(price, "price")
        if stop_price is not None:
            params["stop_price"] = _decimal(stop_price, "stop_price")
        if tif is not None:
            params["tif"] = tif
        if expire_time is not None:
            if isinstance(expire_time, bool) or not isinstance(expire_time, int):
                kind = expire_time.__class__.__name__
                raise TypeError(f"expire_time: give an int (ms since the epoch), not {kind}")
            params["expire_time"] = expire_time
        if display_qty is not None:
            params["display_qty"] = _decimal(display_qty, "display_qty")
        if post_only:
            params["post_only"] = True
        if client_order_id is not None:
            params["client_order_id"] = client_order_id
        if stp is not None:
            params["stp"] = stp
        return await self._call("order.place", params, Received)

    async def cancel(self, symbol: str, *, order_id: str | None = None,
                     client_order_id: str | None = None) -> None:
        """Request a cancel (by exactly one id); the outcome is a ``canceled`` or
        ``cancel_rejected`` execution report."""
        params = _order_ref(symbol, order_id, client_order_id)
        await self.request("order.cancel", params)

    async def amend(self, symbol: str, *, order_id: str | None = None,
                    client_order_id: str | None = None, qty: Number | None = None,
                    price: Number | None = None, stop_price: Number | None = None) -> None:
        """Request an amend (new total qty, price and/or an untriggered stop's
        ``stop_price``); outcome as a ``replaced`` or ``cancel_rejected`` report."""
        params = _order_ref(symbol, order_id, client_order_id)
        if qty is not None:
            params["qty"] = _decimal(qty, "qty")
        if price is not None:
            params["price"] = _decimal(price, "price")
        if stop_price is not None:
            params["stop_price"] = _decimal(stop_price, "stop_price")
        await self.request("order.amend", params)

    async def cancel_all(self, symbol: str | None = None) -> None:
        """Request a cancel of every open order of the account (in one market, or all)."""
        await self.request("order.cancel_all", {"symbol": symbol} if symbol else None)

    async def open_orders(self, symbol: str | None = None) -> list[ExecutionReport]:
        """The account's open orders as the engine applied them (exec_type ``status``)."""
        result = await self._call("orders.open", {"symbol": symbol} if symbol else None, _Orders)
        return result.orders

    async def balances(self, asset: str | None = None) -> list[AssetBalance]:
        """The account's committed balances (every asset it has touched, or ``asset``)."""
        result = await self._call("account.balances",
                                  {"asset": asset} if asset is not None else None,
                                  BalancesResult)
        return result.balances

    async def balance_updates(self) -> AsyncIterator[BalanceUpdate]:
        """``balances`` pushes of the account, in order, until the connection closes."""
        while True:
            item = await self._next_balance_push()
            if item is _CLOSED:
                return
            yield item

    async def next_balance(self) -> BalanceUpdate:
        """The next balance update; raises ``ConnectionClosed`` if the connection ends first."""
        item = await self._next_balance_push()
        if item is _CLOSED:
            raise ConnectionClosed(None, None)
        update: BalanceUpdate = item
        return update

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        """Execution reports of the account, in order, until the connection closes."""
        while True:
            item = await self._next_push()
            if item is _CLOSED:
                return
            if isinstance(item, ExecutionReport):
                yield item

    async def next_execution(self) -> ExecutionReport:
        """The next execution report; raises ``ConnectionClosed`` if the connection ends first.

        Bound the wait with ``async with asyncio.timeout(s):``.
        """
        while True:
            item = await self._next_push()
            if item is _CLOSED:
                raise ConnectionClosed(None, None)
            if isinstance(item, ExecutionReport):
                return item

    def _push_of(self, frame: str | bytes) -> Any:
        try:
            push = _execution_decoder.decode(frame)
        except msgspec.ValidationError:
            try:
                balance = _balance_decoder.decode(frame)
            except msgspec.ValidationError:
                return msgspec.json.decode(frame)
            return balance.data if balance.channel == "balances" else msgspec.json.decode(frame)
        return push.data if push.channel == "executions" else msgspec.json.decode(frame)


def _order_ref(symbol: str, order_id: str | None, client_order_id: str | None
               ) -> dict[str, Any]:
    params: dict[str, Any] = {"symbol": symbol}
    if order_id is not None:
        params["order_id"] = order_id
    if client_order_id is not None:
        params["client_order_id"] = client_order_id
    return params


MdChannel = Literal["trades", "book", "ticker", "candles"]


class MarketDataClient(_Client):
    """Market-data connection: subscribe to ``trades``, ``book``, ``ticker``, ``candles``;
    iterate pushes.

    Pushes are the PROTOCOL.md dicts (``{"channel", "type", ...}``), heartbeats included.
    ``candles`` takes an ``interval`` (``"1m"``, ``"5m"``, ``"15m"``, ``"1h"``, ``"4h"``,
    ``"1d"``)::

        await feed.subscribe("candles", "BTC-USD", interval="1m")
        snapshot = await feed.next_push()  # {"type": "snapshot", "data": [<last 100>]}
    """

    async def subscribe(self, channel: MdChannel, symbol: str, depth: int | None = None,
                        interval: str | None = None) -> dict[str, Any]:
        """Subscribe; the snapshot (``book``, ``ticker``, ``trades``, ``candles``) and the
        updates then arrive as pushes, in order, after this reply."""
        return await self._call("subscribe", _subscription(channel, symbol, depth, interval),
                                dict[str, Any])

    async def unsubscribe(self, channel: MdChannel, symbol: str, depth: int | None = None,
                          interval: str | None = None) -> dict[str, Any]:
        """Unsubscribe (``candles`` without ``interval``: every interval of ``symbol``)."""
        return await self._call("unsubscribe", _subscription(channel, symbol, depth, interval),
                                dict[str, Any])

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self.pushes()

    async def pushes(self) -> AsyncIterator[dict[str, Any]]:
        """Every push in arrival order until the connection closes."""
        while True:
            item = await self._next_push()
            if item is _CLOSED:
                return
            yield item

    async def next_push(self) -> dict[str, Any]:
        """The next push; raises ``ConnectionClosed`` when the connection ends."""
        item = await self._next_push()
        if item is _CLOSED:
            raise ConnectionClosed(None, None)
        result: dict[str, Any] = item
        return result


def _subscription(channel: str, symbol: str, depth: int | None,
                  interval: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"channel": channel, "symbol": symbol}
    if depth is not None:
        params["depth"] = depth
    if interval is not None:
        params["interval"] = interval
    return params

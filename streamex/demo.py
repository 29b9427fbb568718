"""``streamex demo``: a small seeded market maker, so a fresh exchange has a live book and trades.

It trades like any outside client, through the gateway's websocket with the
SDK (:mod:`streamex.client`), on two accounts: the *maker* keeps a ladder of
post-only bids and asks around a mid that takes a seeded random walk (the
quoting logic is :mod:`streamex.demo_quotes`, pure), and the *taker* now and
then sends an IOC across the spread, so trades print (self-trade prevention
would stop them within one account). Per market and update (``rate`` per
second, default 1) it asks ``orders.open`` for the maker's orders, sends the
few amends/places/cancels that turn them into the new ladder (usually none
or one per side), waits for their execution reports, and maybe takes.

Behaviour:

- Bounded: at most one update's requests are outstanding per market; an
  update waits until the previous one's reports have arrived (a stalled
  engine stops the demo, it does not queue orders behind it), and a
  request refused with ``RATE_LIMITED``/``OVERLOADED`` is sent again only
  after a pause (0.5 s doubling up to 10 s, jittered) while its market waits.
- Clean: both accounts log on with ``cancel_on_disconnect``, and on stop
  (``stop`` set, ``duration`` elapsed; SIGINT/SIGTERM for the command) it
  sends ``order.cancel_all`` for both and waits until ``orders.open`` is empty.
- Resilient: when the gateway goes away it reconnects with backoff (0.25 s
  doubling to 10 s) and carries on with the same walk; orders that survived
  (a gateway that crashed could not cancel them) are taken over, because
  the maker's orders are recognised by their client order ids (``dmk<n>``).
- Quiet: one log line at start (``event=start ... quotes="BTC-USD around
  60000.00 (...)"``: what it quotes), then warnings only.
- Reproducible: with the same seed, markets and starting book, it sends the
  same requests in the same order per market. The starting mid is the
  book's (market data) if it has a bid or ask, else that of the maker's own
  open orders, else the last trade's price, else ``mids``, else the symbol's
  default (60000 BTC-USD, 3000 ETH-USD, else 100 within the market's range).

``run_demo(...)`` is the coroutine; ``streamex demo`` (:func:`run`) its command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvloop
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from contract.errors import (
    OVERLOADED,
    POST_ONLY_WOULD_TAKE,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UNKNOWN_ORDER,
    StreamexError,
)
from contract.market import Market
from streamex.client import ExecutionReport, MarketDataClient, OrderClient
from streamex.demo_quotes import (
    Action,
    AmendQuote,
    CancelQuote,
    PlaceQuote,
    QuotePlanner,
    Resting,
    TakeOrder,
    book_mid,
    id_number,
    maker_id,
    mid_price,
    parse_mid,
    reconcile,
    resting_of,
    taker_id,
    wire_request,
)
from streamex.logs import add_log_level, quote_value, setup_logging

log = logging.getLogger("streamex.demo")

MAKER_SECRET_ENV = "STREAMEX_DEMO_MAKER_SECRET"
TAKER_SECRET_ENV = "STREAMEX_DEMO_TAKER_SECRET"
MAX_RATE = 20.0
"""Most updates per second per market (each sends ~0-3 orders)."""
ACK_TIMEOUT_S = 5.0
"""Longest wait within an update for the reports of its requests."""
BOOK_TIMEOUT_S = 5.0
"""Longest wait for the market-data book and ticker snapshots at start."""
STALL_S = 30.0
"""An update whose reports have not come for this long is given up (resync by orders.open)."""
MAX_LEVELS = 50
STOP_TIMEOUT_S = 5.0
"""Longest wait at stop for the cancels to show in ``orders.open``."""
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 10.0
BACKOFF_MAX_S = 10.0
STARTUP_GRACE_S = 10.0
"""Failed first connections are not logged this long (``streamex up`` is still starting)."""

T = TypeVar("T")
RequestHook = Callable[[str, str, dict[str, Any]], None]
"""``(role, method, params)`` of each order-entry request the demo sends, before it goes."""

_SETTLES: dict[type, frozenset[str]] = {
    PlaceQuote: frozenset({"new", "rejected"}),
    AmendQuote: frozenset({"replaced", "cancel_rejected"}),
    CancelQuote: frozenset({"canceled", "cancel_rejected"}),
}
"""exec_types of the report that settles each maker request."""
_TERMINAL = frozenset({"filled", "canceled", "expired", "rejected"})
_BENIGN = frozenset({POST_ONLY_WOULD_TAKE, UNKNOWN_ORDER})
"""Reasons of rejections that others' trading explains (no warning)."""


class DemoError(Exception):
    """A problem retrying cannot fix (bad credentials, bad URL, one account for both roles)."""


@dataclass(frozen=True)
class Credentials:
    """An account's API key and secret (the secret stays out of reprs)."""

    api_key: str
    secret: str = field(repr=False)


async def run_demo(gateway_url: str, maker: Credentials, taker: Credentials, *,
                   marketdata_url: str | None = None, seed: int = 0, rate: float = 1.0,
                   levels: int = 5, mids: Mapping[str, str] | None = None,
                   duration: float | None = None, stop: asyncio.Event | None = None,
                   on_request: RequestHook | None = None) -> None:
    """Quote every listed market until ``stop`` is set or ``duration`` seconds have passed.

    Then cancels the orders of both accounts and returns. ``mids`` gives
    starting mids (``{"BTC-USD": "60000"}``) for markets with an empty book
    and no last trade (those win otherwise); ``marketdata_url`` is where to
    read the books and last prices at start (without it, only the maker's
    own open orders count).
    ``on_request`` sees each order-entry request before it is sent. Raises
    :class:`DemoError` for a problem that retrying cannot fix and
    ``ValueError`` for bad arguments; network trouble is retried forever.
    """
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate: must be in (0, {MAX_RATE:g}]")
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels: must be in 1..{MAX_LEVELS}")
    for symbol, text in (mids or {}).items():
        try:
            mid_price(text)
        except ValueError as exc:
            raise ValueError(f"mids[{symbol!r}]: {exc}") from None
    demo = _Demo(gateway_url, maker, taker, marketdata_url, seed, rate, levels,
                 dict(mids or {}), stop or asyncio.Event(), on_request)
    timer = None
    if duration is not None:
        timer = asyncio.get_running_loop().call_later(duration, demo.stop.set)
    try:
        await demo.run()
    finally:
        if timer is not None:
            timer.cancel()


class _Acks:
    """Futures for the execution reports that settle requests, by ``(symbol, client id)``."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], tuple[Callable[[ExecutionReport], bool],
                                                   asyncio.Future[ExecutionReport]]] = {}

    def expect(self, symbol: str, client_order_id: str,
               settles: Callable[[ExecutionReport], bool]) -> asyncio.Future[ExecutionReport]:
        future: asyncio.Future[ExecutionReport] = asyncio.get_running_loop().create_future()
        self._waiting[symbol, client_order_id] = (settles, future)
        return future

    def forget(self, symbol: str, client_order_id: str) -> None:
        entry = self._waiting.pop((symbol, client_order_id), None)
        if entry is not None:
            entry[1].cancel()

    def forget_symbol(self, symbol: str) -> None:
        for key in [k for k in self._waiting if k[0] == symbol]:
            self.forget(*key)

    def pending(self, symbol: str) -> list[asyncio.Future[ExecutionReport]]:
        return [f for (s, _), (_, f) in self._waiting.items() if s == symbol and not f.done()]

    def clear(self) -> None:
        for _, future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def follow(self, client: OrderClient) -> None:
        """Settle waiters from ``client``'s reports until its connection closes."""
        async for report in client.executions():
            if report.exec_type in ("rejected", "cancel_rejected") \
                    and report.reason not in _BENIGN:
                log.warning("%s: %s %s refused: %s", report.symbol, client.account,
                            report.client_order_id, report.reason)
            if report.client_order_id is None:
                continue
            key = (report.symbol, report.client_order_id)
            entry = self._waiting.get(key)
            if entry is not None and entry[0](report):
                del self._waiting[key]
                if not entry[1].done():
                    entry[1].set_result(report)


class _Demo:
    def __init__(self, gateway_url: str, maker: Credentials, taker: Credentials,
                 marketdata_url: str | None, seed: int, rate: float, levels: int,
                 mids: dict[str, str], stop: asyncio.Event, on_request: RequestHook | None
                 ) -> None:
        self.gateway_url = gateway_url
        self.maker_credentials = maker
        self.taker_credentials = taker
        self.marketdata_url = marketdata_url
        self.seed = seed
        self.interval = 1.0 / rate
        self.levels = levels
        self.mids = mids
        self.stop = stop
        self.on_request = on_request
        self.markets: dict[str, Market] = {}
        self.planners: dict[str, QuotePlanner] = {}
        self._next_maker: dict[str, int] = {}
        self._next_taker: dict[str, int] = {}
        self._stalled: dict[str, float] = {}
        """Markets whose last update's reports are late, and since when."""
        self._logged_on = False
        self._jitter = random.Random()

    # -- connection life cycle ---------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = RECONNECT_MIN_S
        while not self.stop.is_set():
            self._logged_on = False
            try:
                await self._session()
                return
            except InvalidURI as exc:
                raise DemoError(f"bad gateway URL {self.gateway_url!r}: {exc}") from None
            except (OSError, WebSocketException, TimeoutError, StreamexError) as exc:
                if self._logged_on:  # it was working: retry from the shortest delay
                    delay = RECONNECT_MIN_S
                if self.planners or loop.time() - started > STARTUP_GRACE_S:
                    log.warning("gateway %s: %s; reconnecting in %.2g s",
                                self.gateway_url, _why(exc), delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stop.wait()
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _session(self) -> None:
        """One connection of each account: quote until stop (then cancel) or a failure."""
        async with OrderClient.connect(self.gateway_url, open_timeout=5.0) as maker, \
                OrderClient.connect(self.gateway_url, open_timeout=5.0) as taker:
            for client, creds, role in ((maker, self.maker_credentials, "maker"),
                                        (taker, self.taker_credentials, "taker")):
                try:
                    await client.logon(creds.api_key, creds.secret, cancel_on_disconnect=True)
                except StreamexError as exc:
                    if exc.code == UNAUTHENTICATED:
                        raise DemoError(f"{role} logon refused: {exc.message}") from None
                    raise
            if maker.account == taker.account:
                raise DemoError(f"maker and taker are the same account ({maker.account}): "
                                "self-trade prevention would stop every trade")
            self._logged_on = True
            markets = {m.symbol: m for m in await maker.markets()}
            if not markets:
                raise DemoError("the gateway lists no markets")
            if not self.planners:
                await self._start(maker, taker, markets)
            symbols = [s for s in self.planners if s in markets]
            acks = _Acks()
            self._stalled.clear()
            readers = [asyncio.create_task(acks.follow(c)) for c in (maker, taker)]
            loops = [asyncio.create_task(self._quote(s, maker, taker, acks)) for s in symbols]
            stopping: asyncio.Task[Any] = asyncio.create_task(self.stop.wait())
            try:
                done, _ = await asyncio.wait([*readers, *loops, stopping],
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                stopping.cancel()
            try:
                if self.stop.is_set():
                    await self._cancel_everything(maker, taker)
                    return
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        raise error
                raise ConnectionClosed(None, None)  # a reader ended: the connection is gone
            finally:
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                acks.clear()

    async def _start(self, maker: OrderClient, taker: OrderClient,
                     markets: dict[str, Market]) -> None:
        """First connection: where each market starts, its planner, the start line.

        The start is the book's mid (market data), else the mid of the maker's
        own open orders, else the last trade's price, else ``mids``, else the
        symbol's default.
        """
        seen = await self._market_prices(markets)
        own: dict[str, tuple[int | None, int | None]] = {}
        for report in await self._open_orders(maker, None):
            market = markets.get(report.symbol)
            if market is None or report.price is None:
                continue
            price = market.parse_price(report.price)
            bid, ask = own.get(report.symbol, (None, None))
            if report.side == "buy":
                bid = price if bid is None else max(bid, price)
            else:
                ask = price if ask is None else min(ask, price)
            own[report.symbol] = (bid, ask)
        for symbol, market in markets.items():
            bid, ask, last = seen.get(symbol, (None, None, None))
            mid = book_mid(bid, ask)
            if mid is None:
                mid = book_mid(*own.get(symbol, (None, None)))
            if mid is None:
                mid = last
            if mid is None and symbol in self.mids:
                mid = parse_mid(market, self.mids[symbol])
            self.markets[symbol] = market
            self.planners[symbol] = QuotePlanner(market, self.seed, mid, levels=self.levels)
            self._next_maker[symbol] = self._next_taker[symbol] = 0
        unknown = sorted(set(self.mids) - set(markets))
        if unknown:
            log.warning("mids given for markets that are not listed: %s", ", ".join(unknown))
        first = next(iter(self.planners.values()))
        log.info("event=start service=demo maker=%s taker=%s seed=%d rate=%s levels=%d "
                 "take_share=%s quotes=%s", maker.account, taker.account, self.seed,
                 f"{1.0 / self.interval:g}", self.levels, f"{first.take_probability:g}",
                 quote_value("; ".join(p.describe() for p in self.planners.values())))

    async def _market_prices(self, markets: dict[str, Market]
                             ) -> dict[str, tuple[int | None, int | None, int | None]]:
        """Best bid, best ask and last trade price (ticks) per market, from market data.

        Empty without ``marketdata_url``; retried for ``BOOK_TIMEOUT_S`` (the
        service may be starting too), then given up with a warning.
        """
        if self.marketdata_url is None or not markets:
            return {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOOK_TIMEOUT_S
        while True:
            try:
                async with asyncio.timeout(max(0.05, deadline - loop.time())), \
                        MarketDataClient.connect(self.marketdata_url) as feed:
                    return await _read_prices(feed, markets)
            except (OSError, WebSocketException, TimeoutError, StreamexError) as exc:
                if isinstance(exc, TimeoutError) or loop.time() + 0.2 >= deadline:
                    log.warning("market data %s: %s; starting from the maker's orders or the "
                                "default mids", self.marketdata_url, _why(exc))
                    return {}
            await asyncio.sleep(0.2)

    async def _cancel_everything(self, maker: OrderClient, taker: OrderClient) -> None:
        """``order.cancel_all`` for both accounts, then wait until nothing is open."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                accounts = ((maker, "maker"), (taker, "taker"))
                for client, role in accounts:
                    await self._backing_off("all markets", role, "order.cancel_all", {},
                                            client.cancel_all)
                for client, role in accounts:
                    while True:  # the cancels are applied: orders.open shows what the engine did
                        if not await self._backing_off("all markets", role, "orders.open", {},
                                                       client.open_orders):
                            break
                        await asyncio.sleep(0.1)
        except (TimeoutError, StreamexError, ConnectionClosed) as exc:
            log.warning("stopping: could not confirm that every demo order is canceled (%s); "
                        "cancel_on_disconnect will cancel those placed on this connection",
                        _why(exc))

    # -- quoting --------------------------------------------------------------------------

    async def _quote(self, symbol: str, maker: OrderClient, taker: OrderClient,
                     acks: _Acks) -> None:
        """Update the market's quotes every ``interval`` (never faster, never catching up)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + self.interval, loop.time())
            try:
                await self._update(symbol, maker, taker, acks)
            except StreamexError as exc:
                log.warning("%s: request refused: %s %s", symbol, exc.code, exc.message)

    async def _update(self, symbol: str, maker: OrderClient, taker: OrderClient,
                      acks: _Acks) -> None:
        """One step: read the maker's orders, send the diff, wait for it, maybe take."""
        pending = acks.pending(symbol)
        if pending:  # the last update is not settled yet: never pile requests up
            await asyncio.wait(pending, timeout=self.interval)
            if acks.pending(symbol):
                now = asyncio.get_running_loop().time()
                since = self._stalled.setdefault(symbol, now)
                if since == now:
                    log.warning("%s: no execution reports yet for %d requests; sending nothing "
                                "more until they come", symbol, len(pending))
                if now - since < STALL_S:
                    return
                log.warning("%s: still no execution reports after %.0f s; resyncing from "
                            "orders.open", symbol, now - since)
                acks.forget_symbol(symbol)
        self._stalled.pop(symbol, None)
        market, planner = self.markets[symbol], self.planners[symbol]
        step = planner.next_step()
        resting = self._resting(market, await self._open_orders(maker, symbol))
        actions = reconcile(market, step.quotes, resting, lambda: self._new_id(symbol))
        waiting: list[asyncio.Future[ExecutionReport]] = []
        for action in actions:
            future = await self._send(maker, "maker", market, action, acks,
                                      _exec_types(_SETTLES[type(action)]))
            if future is not None:
                waiting.append(future)
        if waiting:
            await asyncio.wait(waiting, timeout=ACK_TIMEOUT_S)
            if not all(f.done() for f in waiting):
                return  # settled later, or the next update waits for them
        if step.take is not None:
            n = self._next_taker[symbol]
            self._next_taker[symbol] = n + 1
            take = TakeOrder(taker_id(n), step.take.side, step.take.price, step.take.qty)
            future = await self._send(taker, "taker", market, take, acks, _terminal)
            if future is not None:
                await asyncio.wait([future], timeout=ACK_TIMEOUT_S)

    async def _send(self, client: OrderClient, role: str, market: Market,
                    action: Action | TakeOrder, acks: _Acks,
                    settles: Callable[[ExecutionReport], bool]
                    ) -> asyncio.Future[ExecutionReport] | None:
        """Send one request; the future of the report that settles it (None if refused).

        A refusal is logged (unless the order is just gone) and the update goes on.
        """
        symbol, coid = market.symbol, action.client_order_id
        method, params = wire_request(market, action)
        future = acks.expect(symbol, coid, settles)

        async def send() -> None:
            if isinstance(action, PlaceQuote):
                await client.place(symbol, action.side, "limit", params["qty"],
                                   params["price"], post_only=True, client_order_id=coid)
            elif isinstance(action, TakeOrder):
                await client.place(symbol, action.side, "limit", params["qty"],
                                   params["price"], tif="IOC", client_order_id=coid)
            elif isinstance(action, AmendQuote):
                await client.amend(symbol, client_order_id=coid, qty=params["qty"],
                                   price=params.get("price"))
            else:
                await client.cancel(symbol, client_order_id=coid)

        try:
            await self._backing_off(symbol, role, method, params, send)
        except StreamexError as exc:
            acks.forget(symbol, coid)
            if exc.code != UNKNOWN_ORDER:
                log.warning("%s: %s %s refused: %s %s", symbol, method, coid, exc.code,
                            exc.message)
            return None
        return future

    async def _open_orders(self, maker: OrderClient, symbol: str | None
                           ) -> list[ExecutionReport]:
        return await self._backing_off(symbol or "all markets", "maker", "orders.open",
                                       {"symbol": symbol} if symbol else {},
                                       lambda: maker.open_orders(symbol))

    async def _backing_off(self, symbol: str, role: str, method: str, params: dict[str, Any],
                           call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried after a pause while the gateway answers RATE_LIMITED or
        OVERLOADED: 0.5 s doubling up to 10 s, with jitter (which changes the timing
        only, so that markets refused together do not come back together)."""
        delay = 0.5
        while True:
            self._record(role, method, params)
            try:
                return await call()
            except StreamexError as exc:
                if exc.code not in (RATE_LIMITED, OVERLOADED):
                    raise
                pause = delay * self._jitter.uniform(1.0, 1.5)
                log.warning("%s: %s refused: %s (%s); retrying in %.2g s", symbol, method,
                            exc.code, exc.message, pause)
            await asyncio.sleep(pause)
            delay = min(2 * delay, BACKOFF_MAX_S)

    def _resting(self, market: Market, reports: Iterable[ExecutionReport]) -> list[Resting]:
        """The maker's own orders among ``reports``; its id counter moves past theirs."""
        resting = []
        symbol = market.symbol
        for r in reports:
            order = resting_of(market, r.client_order_id, r.side, r.price, r.qty, r.cum_qty)
            if order is not None:
                resting.append(order)
                n = id_number(order.client_order_id)
                if n is not None and n >= self._next_maker[symbol]:
                    self._next_maker[symbol] = n + 1
        return resting

    def _new_id(self, symbol: str) -> str:
        n = self._next_maker[symbol]
        self._next_maker[symbol] = n + 1
        return maker_id(n)

    def _record(self, role: str, method: str, params: dict[str, Any]) -> None:
        if self.on_request is not None:
            self.on_request(role, method, params)


async def _read_prices(feed: MarketDataClient, markets: dict[str, Market]
                       ) -> dict[str, tuple[int | None, int | None, int | None]]:
    """The book and ticker snapshots of every market: ``(best bid, best ask, last price)``."""
    books: dict[str, tuple[int | None, int | None]] = {}
    lasts: dict[str, int | None] = {}
    for symbol in markets:
        await feed.subscribe("book", symbol, depth=10)
        await feed.subscribe("ticker", symbol)
    while len(books) < len(markets) or len(lasts) < len(markets):
        push = await feed.next_push()
        market = markets.get(push.get("symbol", ""))
        if market is None or push.get("type") != "snapshot":
            continue
        if push.get("channel") == "book":
            bids, asks = push.get("bids") or [], push.get("asks") or []
            books[market.symbol] = (market.parse_price(bids[0][0]) if bids else None,
                                    market.parse_price(asks[0][0]) if asks else None)
        elif push.get("channel") == "ticker":
            last = push.get("last_price")
            lasts[market.symbol] = market.parse_price(last) if last else None
    return {s: (*books[s], lasts[s]) for s in markets}


def _exec_types(types: frozenset[str]) -> Callable[[ExecutionReport], bool]:
    return lambda report: report.exec_type in types


def _terminal(report: ExecutionReport) -> bool:
    return report.status in _TERMINAL


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return "connection lost" if exc.rcvd is None else f"connection closed ({exc.rcvd})"
    if isinstance(exc, StreamexError):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


# -- the command --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a small seeded market maker through the gateway (maker and taker accounts), "
        "so the book has quotes and trades print. Stops on SIGINT/SIGTERM, cancelling "
        "its orders.")
    parser.add_argument("--config", help="TOML configuration: the accounts (by --maker and "
                        "--taker id) and the default URLs")
    parser.add_argument("--maker", default="demo1",
                        help="maker account id in the config (default: %(default)s)")
    parser.add_argument("--taker", default="demo2",
                        help="taker account id in the config (default: %(default)s)")
    parser.add_argument("--maker-key", help="maker API key (instead of --config)")
    parser.add_argument("--maker-secret", help=f"maker secret (better: ${MAKER_SECRET_ENV})")
    parser.add_argument("--taker-key", help="taker API key (instead of --config)")
    parser.add_argument("--taker-secret", help=f"taker secret (better: ${TAKER_SECRET_ENV})")
    parser.add_argument("--gateway-url", help="order entry (default: the config's [gateway], "
                        "else ws://127.0.0.1:8001/)")
    parser.add_argument("--marketdata-url", help="market data, read at start for the books' "
                        "mids and last prices (default: the config's [marketdata], else none)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed: the same seed sends the same requests (default: 0)")
    parser.add_argument("--rate", type=_rate, default=1.0,
                        help="quote updates per second per market, each ~0-3 orders "
                        f"(default: %(default)s, at most {MAX_RATE:g})")
    parser.add_argument("--levels", type=_levels, default=5,
                        help="levels on each side (default: %(default)s)")
    parser.add_argument("--mid", action="append", default=[], metavar="SYMBOL=PRICE",
                        help="where to start SYMBOL when its book is empty and it has not "
                        "traded (repeatable; default: 60000 for BTC-USD, 3000 for ETH-USD, "
                        "else 100)")
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="stop after this long (default: run until stopped)")
    add_log_level(parser)


def _rate(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_RATE:
        raise argparse.ArgumentTypeError(f"at most {MAX_RATE:g}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _levels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_LEVELS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_LEVELS}")
    return value


@dataclass(frozen=True)
class _Settings:
    gateway_url: str
    marketdata_url: str | None
    maker: Credentials
    taker: Credentials
    mids: dict[str, str]


def _url(host: str, port: int) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"ws://[{host}]:{port}/" if ":" in host else f"ws://{host}:{port}/"


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> _Settings:
    """Accounts and URLs from the arguments, the environment and the config; ValueError."""
    from streamex.config import load_config

    config = load_config(args.config) if args.config else None
    accounts = {a.id: a for a in config.accounts} if config else {}

    def credentials(role: str, account_id: str, key: str | None, secret: str | None,
                    env: str) -> Credentials:
        if key is not None:
            secret = secret or environ.get(env)
            if not secret:
                raise ValueError(f"--{role}-key needs --{role}-secret or ${env}")
            return Credentials(key, secret)
        if config is None:
            raise ValueError(f"give --config FILE (accounts by --{role} id) or --{role}-key "
                             f"with ${env}")
        account = accounts.get(account_id)
        if account is None:
            known = ", ".join(sorted(accounts)) or "none"
            raise ValueError(f"--{role} {account_id}: no such account in {args.config} "
                             f"(accounts: {known})")
        return Credentials(account.api_key, account.secret)

    maker = credentials("maker", args.maker, args.maker_key, args.maker_secret,
                        MAKER_SECRET_ENV)
    taker = credentials("taker", args.taker, args.taker_key, args.taker_secret,
                        TAKER_SECRET_ENV)
    if maker.api_key == taker.api_key:
        raise ValueError("maker and taker must be different accounts (self-trade prevention "
                         "stops trades within one account)")
    mids: dict[str, str] = {}
    for item in args.mid:
        symbol, sep, price = item.partition("=")
        if not sep or not symbol or not price:
            raise ValueError(f"--mid {item!r}: expected SYMBOL=PRICE, e.g. BTC-USD=60000")
        try:
            mid_price(price)
        except ValueError as exc:
            raise ValueError(f"--mid {item!r}: {exc}") from None
        mids[symbol] = price
    gateway = args.gateway_url or (_url(config.gateway.host, config.gateway.port) if config
                                   else "ws://127.0.0.1:8001/")
    marketdata = args.marketdata_url or (
        _url(config.marketdata.host, config.marketdata.port) if config else None)
    return _Settings(gateway, marketdata, maker, taker, mids)


async def _main(settings: _Settings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: do not wait for the cancels
            main.cancel()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await run_demo(settings.gateway_url, settings.maker, settings.taker,
                       marketdata_url=settings.marketdata_url, seed=args.seed, rate=args.rate,
                       levels=args.levels, mids=settings.mids, duration=args.duration,
                       stop=stop)
    except DemoError as exc:
        print(f"streamex demo: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        settings = _settings(args, os.environ)
    except ValueError as exc:  # streamex.config.ConfigError is one
        print(f"streamex demo: {exc}", file=sys.stderr)
        return 2
    return uvloop.run(_main(settings, args))

"""The REST service of one process: routes, and the parts it composes.

``ApiService(config, redis_url, store_url)`` runs, without any websocket
listener, a ``gateway.server.Gateway`` (XADD batcher, execution router with
the open-orders and balances views, backlog monitor, and its
``OrderEntry``: REST enters orders through exactly the code the websocket
sessions use), one live book per market (``api.books``), the waiters for the
engine's answers (``api.outcomes``, fed by the router) and the history
database (``api.history``; optional: without it the history endpoints
answer 503). :meth:`ApiService.start` loads everything, then listens;
:meth:`ApiService.close` stops listening, then the tasks.

Endpoints (PROTOCOL.md, section D): :data:`ROUTES`. Other products' lists
that ccxt's ``load_markets`` asks for (``fapi``/``dapi``/``eapi``
``exchangeInfo``, ``sapi`` coins and margin pairs) answer empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from prometheus_client import CollectorRegistry

from api import account, market, trading
from api.books import READ_INTERVAL_S, LiveBooks
from api.context import ApiContext
from api.history import History
from api.http import MAX_BODY, Route, build_app
from api.metrics import ApiCollector, ApiStats, add_ops_routes
from api.outcomes import Outcomes
from api.shapes import Symbols
from contract.events import Event
from contract.keys import out_stream
from contract.risk import risk_keys, risk_tag
from contract.settings import Config
from gateway.server import Gateway
from ops.health import Health
from ops.metrics import process_registry
from store.db import open_store

log = logging.getLogger("streamex.api")

ROUTES = (
    Route("GET", "/api/v3/ping", market.ping),
    Route("GET", "/api/v3/time", market.server_time),
    Route("GET", "/api/v3/exchangeInfo", market.exchange_info),
    Route("GET", "/api/v3/depth", market.depth),
    Route("GET", "/api/v3/trades", market.recent_trades),
    Route("GET", "/api/v3/historicalTrades", market.historical_trades),
    Route("GET", "/api/v3/aggTrades", market.agg_trades),
    Route("GET", "/api/v3/klines", market.klines),
    Route("GET", "/api/v3/uiKlines", market.klines),
    Route("GET", "/api/v3/ticker/24hr", market.ticker_24h),
    Route("GET", "/api/v3/ticker/price", market.price_ticker),
    Route("GET", "/api/v3/ticker/bookTicker", market.book_ticker),
    Route("POST", "/api/v3/order", trading.new_order, signed=True),
    Route("DELETE", "/api/v3/order", trading.cancel_order, signed=True),
    Route("GET", "/api/v3/order", account.query_order, signed=True),
    Route("GET", "/api/v3/openOrders", account.open_orders, signed=True),
    Route("DELETE", "/api/v3/openOrders", trading.cancel_open_orders, signed=True),
    Route("GET", "/api/v3/allOrders", account.all_orders, signed=True),
    Route("GET", "/api/v3/myTrades", account.my_trades, signed=True),
    Route("GET", "/api/v3/account", account.account_info, signed=True),
    Route("GET", "/api/v3/account/commission", account.commission, signed=True),
    # Products streamex does not have, as Binance answers an account without them.
    Route("GET", "/fapi/v1/exchangeInfo", market.empty_product_info),
    Route("GET", "/dapi/v1/exchangeInfo", market.empty_product_info),
    Route("GET", "/eapi/v1/exchangeInfo", market.empty_options_info),
    Route("GET", "/sapi/v1/capital/config/getall", account.empty_signed_list, signed=True),
    Route("GET", "/sapi/v1/margin/allPairs", account.empty_signed_list, signed=True),
    Route("GET", "/sapi/v1/margin/isolated/allPairs", account.empty_signed_list,
          signed=True),
)
"""Every endpoint served: Binance's paths, methods and security types."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ApiService:
    """One REST process. ``async with ApiService(...) as api: await api.start(host, port)``."""

    def __init__(self, config: Config, redis_url: str | None = None,
                 store_url: str | None = None, *, clock_ms: Callable[[], int] = wall_ms,
                 answer_timeout_s: float = 10.0) -> None:
        """``store_url`` (default: ``[history] url``) is the history database; None runs
        without one. Raises ValueError for markets that share a Binance symbol."""
        self.config = config
        symbols = Symbols(config.markets)
        self.outcomes = Outcomes(on_wait=lambda: self.gateway.router.wake())
        # The router names streams by key; history by symbol or risk tag.
        self._stream_names = {out_stream(m.symbol).encode(): m.symbol for m in config.markets}
        shards = config.risk.shards if config.risk.enabled else 0
        self._stream_names.update({risk_keys(k).output.encode(): risk_tag(k)
                                   for k in range(shards)})
        # The router reads as the books do while no request waits for an answer (each
        # request first catches it up: api.http), and every commit while one does.
        self.gateway = Gateway(config, redis_url, clock_ms=clock_ms, observer=self._observe,
                               router_interval_s=READ_INTERVAL_S,
                               router_urgent=self.outcomes.waiting)
        self.books = LiveBooks(config.markets)
        self.store_url = store_url if store_url is not None else config.history.url
        self.history: History | None = None
        self.ctx = ApiContext(config, symbols, self.gateway, self.books, self.outcomes, None,
                              clock_ms, answer_timeout_s)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None
        self.stats = ApiStats() if config.metrics.enabled else None
        """Requests by endpoint and status (``api.metrics``); None with metrics disabled."""
        self.registry: CollectorRegistry | None = None
        if self.stats is not None:
            self.registry = process_registry()
            self.registry.register(ApiCollector(self.stats, self._reconnects))
        self.health = Health("api")
        """``/readyz``: listening, the gateway part loaded and reading, the books running."""
        self.health.add_check("started", self._started_problem)
        self.health.add_check("gateway", self._gateway_problem)
        self.health.add_check("books", self._books_problem)
        self.metrics_url: str | None = None
        """``http://HOST:PORT/metrics`` once listening with metrics on (else None)."""

    def _observe(self, key: bytes, entry_id: bytes, symbol: str, events: list[Event]) -> None:
        self.outcomes.observe(self._stream_names.get(key, ""), entry_id, symbol, events)

    def _reconnects(self) -> int:
        """The order entry's and the books' Redis operations retried. O(markets)."""
        return self.gateway.reconnects() + sum(r.reconnects for r in self.books.readers)

    async def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Open the database, load the views and books, then listen; the bound address.

        ``host``/``port`` default to ``[api]``; port 0 picks a free one. Raises the
        Redis or database error when either cannot be reached.
        """
        if self.store_url is not None:
            self.history = History(await asyncio.to_thread(open_store, self.store_url))
            self.ctx.history = self.history
        await self.gateway.open()
        await self.books.start(self.gateway.topology)
        md = self.config.marketdata
        origins = {f"http://{md.host}:{md.port}"}
        if md.host in ("127.0.0.1", "localhost", "0.0.0.0"):
            origins |= {f"http://127.0.0.1:{md.port}", f"http://localhost:{md.port}"}
        app = build_app(self.ctx, ROUTES, origins,
                        outer=() if self.stats is None else (self.stats.middleware,))
        add_ops_routes(app, self.registry, self.health)
        # A request line (path and query) may be as long as a body: longer ones are
        # answered by aiohttp's parser (400) and the connection is closed.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     max_line_size=MAX_BODY)
        await self._runner.setup()
        api = self.config.api
        site = web.TCPSite(self._runner, host or api.host, api.port if port is None else port)
        await site.start()
        sockname = self._runner.addresses[0]
        self.address = (str(sockname[0]), int(sockname[1]))
        if self.registry is not None:
            host_ = self.address[0]
            host_ = f"[{host_}]" if ":" in host_ else host_
            self.metrics_url = f"http://{host_}:{self.address[1]}/metrics"
        return self.address

    def _started_problem(self) -> str | None:
        return "starting: loading the views and books" if self.address is None else None

    def _gateway_problem(self) -> str | None:
        failed = self.gateway.health.failures()
        return "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())) or None

    def _books_problem(self) -> str | None:
        if any(task.done() for task in self.books.tasks):
            return "stopped: a book reader ended"
        return None

    async def serve_forever(self) -> None:
        """Wait until a Redis task or a book reader stops (its error is raised)."""
        tasks = [asyncio.ensure_future(self.gateway.serve_forever()), *self.books.tasks]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def close(self) -> None:
        """Stop listening (requests in progress finish), then the readers and Redis tasks."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.books.close()
        await self.gateway.close()
        if self.history is not None:
            self.history.close()
            self.history = None

    async def __aenter__(self) -> ApiService:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

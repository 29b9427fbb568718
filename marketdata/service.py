"""The market-data service: one stream reader per market feeding one websocket server.

    service = MarketDataService(config.markets, redis_url, redis=config.redis,
                                history_url=config.history.url)
    await service.start(host, port)      # snapshots and history loaded, listening
    ...
    await service.close()

``redis`` (the config's ``[redis]``) says whether ``redis_url`` is a seed of a
Redis Cluster (more seeds in ``urls``) and, with ``durability = "replicated"``,
that the readers read from replicas. ``history_url`` is the history database
(``sqlite:///...`` or ``postgresql://...``) the candles, 24-hour statistics
and trades snapshots start from (None: they start empty). Stateless apart
from what the engine snapshots, event streams and the database rebuild, so
several services may run side by side and a restarted one catches up alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from contract.market import Market
from contract.settings import RedisConfig
from marketdata.feed import MarketFeed
from marketdata.metrics import MarketDataCollector
from marketdata.outbox import DEFAULT_LIMIT
from marketdata.reader import MarketReader
from marketdata.server import REQUEST_BURST, REQUEST_RATE, FeedServer
from ops.health import Health
from ops.http import metrics_url
from ops.metrics import process_registry
from redisio.client import AnyRedis
from redisio.topology import Topology
from store.db import Store, StoreError, display_url, open_store

log = logging.getLogger("streamex.marketdata")

START_TIMEOUT_S = 30.0


class MarketDataService:
    """Readers + server for ``markets``, on the Redis at ``redis_url``."""

    def __init__(self, markets: Iterable[Market], redis_url: str | None = None, *,
                 redis: RedisConfig | None = None, queue_limit: int = DEFAULT_LIMIT,
                 request_rate: float = REQUEST_RATE, request_burst: int = REQUEST_BURST,
                 history_url: str | None = None, metrics: bool = True) -> None:
        """``redis_url`` overrides ``redis.url``; ``queue_limit``: frames queued per
        connection before the slow-consumer policy; ``request_rate``/``request_burst``:
        each connection's request limit; ``history_url``: the history database to seed
        from (None: none); ``metrics``: serve ``/metrics`` on the websocket port and
        count requests (``[metrics] enabled``); ``/healthz`` and ``/readyz`` are
        served either way."""
        self.markets = tuple(markets)
        self.redis = redis or RedisConfig()
        url = redis_url or self.redis.url
        if url is None:
            raise ValueError("redis_url: no Redis URL given, and none in the config")
        self.redis_url = url
        self.seeds = (url, *(u for u in self.redis.urls if u != url))
        self.feeds = {m.symbol: MarketFeed(m) for m in self.markets}
        self.server = FeedServer(self.markets, self.feeds, queue_limit=queue_limit,
                                 request_rate=request_rate, request_burst=request_burst)
        self.readers: list[MarketReader] = []
        self.history_url = history_url
        self.store: Store | None = None
        self._topology: Topology | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.health = Health("marketdata")
        """``/readyz``: every reader loaded its snapshot and reads without error."""
        self.health.add_check("readers", self._readers_problem)
        self.server.health = self.health
        if metrics:
            self.server.registry = process_registry()
            self.server.registry.register(MarketDataCollector(
                self.server, lambda: sum(r.reconnects for r in self.readers)))
            self.server.count_requests = True
        self.metrics_url: str | None = None
        """``http://HOST:PORT/metrics`` once listening with metrics on (else None)."""

    @property
    def redis_client(self) -> AnyRedis | None:
        """The Redis client of the started service (None before :meth:`start`)."""
        return None if self._topology is None else self._topology.client

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, host: str, port: int) -> None:
        """Load every market's snapshot (and history), start following the streams, then
        listen.

        Raises if Redis cannot be reached within :data:`START_TIMEOUT_S`. A history
        database that cannot be opened is logged; candles and trades then start empty.
        """
        topology = self._topology = Topology(
            self.seeds, cluster=self.redis.cluster,
            replica_reads=self.redis.durability == "replicated")
        async with asyncio.timeout(START_TIMEOUT_S):
            await topology.initialize()
        if self.history_url is not None and self.store is None:
            try:
                self.store = await asyncio.to_thread(open_store, self.history_url)
            except (StoreError, ValueError, OSError) as exc:
                log.error("history database %s: cannot open (%s): candles and trades start "
                          "empty", display_url(self.history_url), exc)
        self.readers = [MarketReader(topology, feed, self.server.publish, self.store)
                        for feed in self.feeds.values()]
        self._tasks = [asyncio.create_task(r.run(), name=f"reader {r.feed.symbol}")
                       for r in self.readers]
        for task in self._tasks:
            task.add_done_callback(_reader_done)
        pending: set[asyncio.Task[Any]] = {asyncio.create_task(r.ready.wait())
                                           for r in self.readers}
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while pending:
                    done, pending = await asyncio.wait(
                        {*pending, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
                    for task in self._tasks:
                        if task.done():
                            task.result()  # a reader died at start-up: raise its error
                    pending -= set(self._tasks)
        finally:
            for t in pending:
                t.cancel()
        await self.server.start(host, port)
        if self.server.registry is not None:
            self.metrics_url = metrics_url(host, self.server.port)

    def _readers_problem(self) -> str | None:
        """None once every reader is loaded and its last read worked. No I/O."""
        if not self.readers:
            return "starting: connecting to Redis"
        loading = [r.feed.symbol for r in self.readers if not r.ready.is_set()]
        if loading:
            return f"loading snapshots: {', '.join(loading)}"
        failing = [r.feed.symbol for r in self.readers if r.failure is not None]
        if failing:
            return f"redis unreachable for: {', '.join(failing)}"
        stopped = [t.get_name() for t in self._tasks if t.done()]
        if stopped:
            return f"stopped: {', '.join(stopped)}"
        return None

    async def wait(self) -> None:
        """Run until a reader fails (its exception is raised) or the task is cancelled."""
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        await self.server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._topology is not None:
            await self._topology.aclose()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None


def _reader_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception())

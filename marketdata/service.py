"""The market-data service: one stream reader per market feeding one websocket server.

    service = MarketDataService(config.markets, redis_url, redis=config.redis)
    await service.start(host, port)      # snapshots loaded, listening
    ...
    await service.close()

``redis`` (the config's ``[redis]``) says whether ``redis_url`` is a seed of a
Redis Cluster (more seeds in ``urls``) and, with ``durability = "replicated"``,
that the readers read from replicas. Stateless apart from what the engine
snapshots and event streams rebuild, so several services may run side by
side and a restarted one catches up alone.
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
from marketdata.outbox import DEFAULT_LIMIT
from marketdata.reader import MarketReader
from marketdata.server import REQUEST_BURST, REQUEST_RATE, FeedServer
from redisio.topology import Topology

log = logging.getLogger("streamex.marketdata")

START_TIMEOUT_S = 30.0


class MarketDataService:
    """Readers + server for ``markets``, on the Redis at ``redis_url``."""

    def __init__(self, markets: Iterable[Market], redis_url: str | None = None, *,
                 redis: RedisConfig | None = None, queue_limit: int = DEFAULT_LIMIT,
                 request_rate: float = REQUEST_RATE, request_burst: int = REQUEST_BURST) -> None:
        """``redis_url`` overrides ``redis.url``; ``queue_limit``: frames queued per
        connection before the slow-consumer policy; ``request_rate``/``request_burst``:
        each connection's request limit."""
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
        self._topology: Topology | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, host: str, port: int) -> None:
        """Load every market's snapshot, start following the streams, then listen.

        Raises if Redis cannot be reached within :data:`START_TIMEOUT_S`.
        """
        topology = self._topology = Topology(
            self.seeds, cluster=self.redis.cluster,
            replica_reads=self.redis.durability == "replicated")
        async with asyncio.timeout(START_TIMEOUT_S):
            await topology.initialize()
        self.readers = [MarketReader(topology, feed, self.server.publish)
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


def _reader_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception())

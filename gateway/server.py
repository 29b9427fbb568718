"""The order-entry service of one process: websocket listener plus its Redis tasks.

``Gateway(config, redis_url)`` owns the Redis topology (``config.redis``: one
server or a cluster's seeds; ``redis_url`` overrides its ``url``), one XADD
batcher, one event-stream reader (:class:`~gateway.router.ExecutionRouter`),
one backlog monitor, the open-orders view and the logged-on sessions. With
``durability = "replicated"`` an order is ``received`` once a replica holds it
(``WAIT``), and reports come from what the replicas hold. :meth:`Gateway.start` rebuilds
the view, starts the tasks and listens (:meth:`Gateway.open` does all but listen: the REST
service runs a Gateway so and enters orders through :attr:`Gateway.entry`, the same
:class:`~gateway.entry.OrderEntry` the sessions use); :meth:`Gateway.close` stops listening,
lets closing sessions send their cancel-on-disconnect commands, then stops the
tasks. The service keeps no state of its own that Redis does not have: after a
restart, clients log on again and resync with ``orders.open``.

With the risk stage on (``[risk] enabled``) every order command goes to the
account's risk shard instead: ``sx:{acct-K}:in``, K = ``risk_shard(account,
shards)``, as ``ToMarket(symbol, command)``, and a place's order id is
``stage_order_id(entry id, K)``; the router then also follows every shard's
``:out`` (balances, the risk stage's own answers) and the process keeps a
balances view for ``account.balances``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve

from contract.commands import OrderCommand
from contract.events import Event, Report
from contract.ids import stage_order_id
from contract.keys import in_stream
from contract.ratelimit import TokenBucket
from contract.risk import ToMarket, encode_risk_command, risk_keys, risk_shard, risk_tag
from contract.settings import Config
from contract.streams import IN_FIELD, in_entry
from gateway.backlog import BacklogMonitor
from gateway.balances_view import BalancesView
from gateway.batcher import XaddBatcher
from gateway.client_ids import InFlightClientIds
from gateway.entry import OrderEntry
from gateway.metrics import GatewayCollector, GatewayStats
from gateway.orders_view import OpenOrdersView
from gateway.router import ExecutionRouter, Observer
from gateway.session import Session
from gateway.staged import StagedPlaces
from gateway.validation import METHODS, RISK_METHODS
from ops.health import Health
from ops.http import metrics_url, ops_hook
from ops.metrics import process_registry
from redisio.topology import Topology

log = logging.getLogger(__name__)

MAX_FRAME = 65_536
"""Largest accepted frame; a bigger one closes the connection with 1009."""


def wall_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class Gateway:
    """One order-entry process. Use ``async with Gateway(...) as g: await g.start(...)``."""

    def __init__(self, config: Config, redis_url: str | None = None, *,
                 backlog_refresh_s: float = 0.1, clock_ms: Callable[[], int] = wall_ms,
                 observer: Observer | None = None, router_interval_s: float = 0.0,
                 router_urgent: Callable[[], bool] | None = None) -> None:
        """``observer`` also sees every ``:out`` entry the router reads (the REST
        service waits for its requests' outcomes with it); ``router_interval_s`` and
        ``router_urgent``: the router's ``min_interval_s`` and ``urgent`` (REST's)."""
        self.config = config
        self.limits = config.limits
        self.accounts_by_api_key = config.accounts_by_api_key
        self.markets = config.markets_by_symbol
        self.markets_result = {"markets": [m.to_wire() for m in config.markets]}
        self.now_ms = clock_ms
        settings = config.redis
        url = redis_url or settings.url
        if url is None:
            raise ValueError("redis_url: no Redis URL given, and none in the config")
        replicated = settings.durability == "replicated"
        self.topology = Topology((url, *(u for u in settings.urls if u != url)),
                                 cluster=settings.cluster, replica_reads=replicated)
        self.redis = self.topology.client
        risk = config.risk
        self.risk_shards = risk.shards if risk.enabled else 0
        """Number of risk shards the orders go through; 0: no risk stage."""
        self.methods = RISK_METHODS if risk.enabled else METHODS
        self.asset_units: Mapping[str, int] = config.asset_units
        self.staged = StagedPlaces() if risk.enabled else None
        self.view = OpenOrdersView(self.markets, self.staged)
        self.client_ids = InFlightClientIds(self.view, staged=self.staged)
        self.balances = BalancesView() if risk.enabled else None
        self._risk_inputs = [risk_keys(k).input for k in range(self.risk_shards)]
        self._risk_tags = [risk_tag(k) for k in range(self.risk_shards)]
        # The risk shards' inputs are measured like markets': an order waits in both.
        self.backlog = BacklogMonitor(self.redis, [*self.markets, *self._risk_tags],
                                      backlog_refresh_s)
        self.batcher = XaddBatcher(self.topology, on_added=self.backlog.added,
                                   wait_replicas=1 if replicated else 0,
                                   wait_timeout_ms=settings.wait_timeout_ms)
        self.stats = GatewayStats() if config.metrics.enabled else None
        """The process's counters (``gateway.metrics``); None with metrics disabled."""
        self._observer = observer
        self.router = ExecutionRouter(self.topology, config.markets, self.view,
                                      self._deliver, self._wanted,
                                      risk_shards=self.risk_shards, balances=self.balances,
                                      asset_units=self.asset_units,
                                      observer=self._observe if self.stats else observer,
                                      min_interval_s=router_interval_s, urgent=router_urgent)
        self.health = Health("gateway")
        """``/readyz``: Redis read without error, the view loaded, the tasks running."""
        self.health.add_check("loaded", self._loaded_problem)
        self.health.add_check("redis", self._redis_problem)
        self.registry: CollectorRegistry | None = None
        """The metrics served on the websocket port once listening (None: disabled)."""
        self.metrics_url: str | None = None
        self.entry = OrderEntry(self)
        """Order entry (checks and submission), shared by the websocket sessions and REST."""
        self.sessions: dict[str, set[Session]] = {}
        self._account_buckets: dict[str, TokenBucket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None

    def reconnects(self) -> int:
        """Redis operations that failed and were retried on a new connection: the
        router's reads and the batcher's XADD pipelines. O(1)."""
        return self.router.read_retries + self.batcher.failures

    async def open(self) -> None:
        """Rebuild the view and start the Redis tasks, without listening (the REST service
        enters orders through :attr:`entry`). Raises the Redis error if Redis cannot be
        reached."""
        await self.topology.initialize()
        await self.router.load()
        await self.backlog.refresh()
        self._tasks = [asyncio.create_task(coro) for coro in
                       (self.batcher.run(), self.router.run(), self.backlog.run())]

    async def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """:meth:`open`, then listen for websocket connections; returns the bound address.

        ``host``/``port`` default to the config's ``[gateway]``; port 0 picks a
        free one. Raises the Redis error if Redis cannot be reached.
        """
        await self.open()
        if self.stats is not None and self.registry is None:
            self.registry = process_registry()
            self.registry.register(GatewayCollector(self.stats, self.reconnects))
        self._server = await serve(
            self._handle, host or self.config.gateway.host,
            self.config.gateway.port if port is None else port,
            max_size=MAX_FRAME, compression=None,
            process_request=ops_hook(self.registry, self.health),
        )
        address = next(iter(self._server.sockets)).getsockname()
        if self.registry is not None:
            self.metrics_url = metrics_url(address[0], address[1])
        return address[0], address[1]

    async def close(self) -> None:
        """Close every connection (1001), flush their disconnect cancels, stop the tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.router.close()
        await self.topology.aclose()

    async def serve_forever(self) -> None:
        """Wait until one of the Redis tasks stops (it re-raises its error)."""
        assert self._tasks, "open() or start() first"
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- sessions ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        stats = self.stats
        if stats is None:
            await Session(self, ws).run()
            return
        stats.connections += 1
        try:
            await Session(self, ws).run()
        finally:
            stats.connections -= 1

    # -- health and metrics -------------------------------------------------------------

    def _loaded_problem(self) -> str | None:
        if not self._tasks:
            return "starting: loading the open-orders view"
        if any(task.done() for task in self._tasks):
            return "stopped: a Redis task ended"
        return None

    def _redis_problem(self) -> str | None:
        failure = self.router.read_failure
        return None if failure is None else f"reading event streams failed: {failure}"

    def _observe(self, key: bytes, entry_id: bytes, symbol: str, events: list[Event]) -> None:
        """Every ``:out`` entry read (after its pushes): the places' first reports."""
        stats = self.stats
        if stats is not None:
            now = time.monotonic()
            for event in events:
                if type(event) is Report and event.account in self.sessions:
                    stats.reported(event.order_id, now)
        if self._observer is not None:
            self._observer(key, entry_id, symbol, events)

    def backlog_of(self, symbol: str) -> int:
        """Commands queued unapplied before an order for ``symbol`` is matched: its market's,
        or the fullest risk shard's if that is more (under the risk stage). O(shards)."""
        backlog = self.backlog.backlog(symbol)
        for tag in self._risk_tags:
            backlog = max(backlog, self.backlog.backlog(tag))
        return backlog

    def submit(self, symbol: str, cmd: OrderCommand) -> asyncio.Future[str]:
        """XADD ``cmd`` (its market's ``:in``, or its account's risk shard's); the future gets
        the entry id, under the risk stage the order id ``stage_order_id(entry id, K)``."""
        if not self.risk_shards:
            return self.batcher.submit(in_stream(symbol), in_entry(cmd))
        shard = risk_shard(cmd.account, self.risk_shards)
        fields = {IN_FIELD: encode_risk_command(ToMarket(symbol, cmd))}
        added = self.batcher.submit(self._risk_inputs[shard], fields)
        if shard == 0:
            return added  # shard 0's order ids are its entry ids
        return _mapped(added, lambda entry_id: stage_order_id(entry_id, shard))

    def register(self, session: Session) -> None:
        """Route the account's execution reports to ``session`` from now on."""
        assert session.account is not None
        self.sessions.setdefault(session.account, set()).add(session)

    def unregister(self, session: Session) -> None:
        if session.account is None:
            return
        sessions = self.sessions.get(session.account)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.sessions[session.account]

    def account_bucket(self, account: str) -> TokenBucket:
        """The account's token bucket, shared by its connections to this process."""
        bucket = self._account_buckets.get(account)
        if bucket is None:
            limits = self.config.limits
            bucket = self._account_buckets[account] = TokenBucket(
                limits.account_rate, limits.account_burst, time.monotonic())
        return bucket

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _wanted(self, account: str) -> bool:
        return account in self.sessions

    def _deliver(self, account: str, frame: bytes) -> None:
        for session in self.sessions.get(account, ()):
            session.push(frame)


def _mapped(future: asyncio.Future[str], f: Callable[[str], str]) -> asyncio.Future[str]:
    """A future of ``f(future's result)`` (its exception or cancellation passed on)."""
    out: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def done(source: asyncio.Future[str]) -> None:
        if out.done():
            return
        if source.cancelled():
            out.cancel()
        elif (exc := source.exception()) is not None:
            out.set_exception(exc)
        else:
            out.set_result(f(source.result()))

    if future.done():
        done(future)
    else:
        future.add_done_callback(done)
    return out

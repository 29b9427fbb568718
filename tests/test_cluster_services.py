"""The gateway's and market data's Redis paths on a real Redis Cluster (3 primaries + 3 replicas).

Markets spread over the primaries by their hash tags. The XADD batcher sends
one pipeline per node; the report router and the market-data reader follow
each slot's ``:out`` on a connection to that slot's node. After the slot map
changed (a manual failover answers MOVED; kill -9 of a primary loses the
connection until its replica is promoted) every path finds the market's new
node by itself, and markets on the other primaries never stop. With
``durability = "replicated"`` an XADD is confirmed only once a replica
holds it, and the readers read from the replicas.

No engine runs here: the tests write engine-like ``:out`` entries themselves.
One cluster serves the whole module; every test starts with every node up
and the cluster empty.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from gateway_helpers import ALICE, logged_on, make_config, next_report, running_gateway
from timing import scaled, wait_until, wait_until_async

from contract.events import Event, Report, encode_events
from contract.keys import in_stream, out_stream
from contract.market import DEFAULT_MARKETS, Market
from contract.settings import RedisConfig, RiskConfig
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from gateway.batcher import Unconfirmed, XaddBatcher
from gateway.orders_view import OpenOrdersView
from gateway.router import ExecutionRouter
from marketdata.feed import Batch, MarketFeed
from marketdata.reader import MarketReader
from marketdata.service import MarketDataService
from redisio.topology import Topology
from streamex.redis_cluster import LocalCluster
from streamex.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("cluster_garbage")

BTC, ETH = DEFAULT_MARKETS
SOL = Market("SOL-USD", "SOL", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000")
X1 = Market("X1-USD", "X1", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000")
MARKETS = (BTC, ETH, SOL, X1)
SYMBOLS = [m.symbol for m in MARKETS]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(primaries=3, data_dir=tmp_path_factory.mktemp("cluster"),
                     die_with_parent=True)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def admin(cluster: LocalCluster) -> Iterator[redis.cluster.RedisCluster]:
    """Every node up and in sync (an earlier test may have killed one), the cluster empty."""
    for i, node in enumerate(cluster.nodes):
        if not node.running:
            cluster.restart_node(i)
    cluster.wait_healthy(scaled(30))
    c = cluster.client()
    c.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    # The replicas empty too (the tests read them) before the test starts.
    for node in cluster.nodes:
        with redis.Redis.from_url(node.url) as direct:
            wait_until(lambda d=direct: d.dbsize() == 0,  # type: ignore[misc]
                       what=f"node :{node.port} flushed")
    yield c
    c.close()


@pytest.fixture
async def writer(cluster: LocalCluster, admin: redis.cluster.RedisCluster
                 ) -> AsyncIterator[aiocluster.RedisCluster]:
    """An asyncio cluster client standing in for the engines (it follows MOVED itself)."""
    c = aiocluster.RedisCluster.from_url(cluster.url, socket_timeout=2.0)
    await c.initialize()
    try:
        yield c
    finally:
        await c.aclose()


async def topology_of(cluster: LocalCluster, *, replica_reads: bool = False) -> Topology:
    topology = Topology(cluster.urls, cluster=True, replica_reads=replica_reads)
    await topology.initialize()
    return topology


# -- engine-like events ------------------------------------------------------------------


def new_report(symbol: str, seq: int) -> Report:
    return Report(seq, 1_700_000_000_000 + seq, "alice", f"{symbol}-{seq}", None, "buy",
                  "limit", "GTC", 100, 1, "new", "new", 0, 0, 0, 1, 0, None, None, None)


def out_fields(events: list[Event], last_input: str = "1-1") -> dict[bytes, bytes]:
    return {OUT_EVENTS_FIELD: encode_events(events), OUT_INPUT_FIELD: last_input.encode()}


async def publish(writer: aiocluster.RedisCluster, symbol: str, *seqs: int) -> None:
    """One ``:out`` entry carrying new-order reports with ``seqs``; retried through a
    failover (the writer's own retries give up after a few)."""
    fields = out_fields([new_report(symbol, s) for s in seqs])
    deadline = time.monotonic() + scaled(15)
    while True:
        try:
            await writer.xadd(out_stream(symbol), fields)  # type: ignore[arg-type]
            return
        except (redis.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class Deliveries:
    """What a router delivered: ``symbol -> [seq, ...]`` in delivery order."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, list[int]] = {s: [] for s in SYMBOLS}

    def __call__(self, account: str, frame: bytes) -> None:
        data = json.loads(frame)["data"]
        symbol, seq = data["exec_id"].rsplit(":", 1)
        assert data["symbol"] == symbol and account == "alice"
        self.by_symbol[symbol].append(int(seq))

    async def wait(self, symbol: str, count: int) -> None:
        await wait_until_async(lambda: len(self.by_symbol[symbol]) >= count,
                               what=f"{count} reports of {symbol}")


def make_router(topology: Topology, deliveries: Deliveries, block_ms: int = 200
                ) -> ExecutionRouter:
    return ExecutionRouter(topology, MARKETS, OpenOrdersView(SYMBOLS), deliveries,
                           lambda account: True, block_ms=block_ms)


def server_of(cluster: LocalCluster, port: int) -> tuple[int, RedisServer]:
    return next((i, n) for i, n in enumerate(cluster.nodes) if n.port == port)


def primary_port(admin: redis.cluster.RedisCluster, key: str) -> int:
    admin.nodes_manager.initialize()
    return int(admin.get_node_from_key(key).port)


def replica_port(admin: redis.cluster.RedisCluster, key: str) -> int:
    admin.nodes_manager.initialize()
    node = admin.get_node_from_key(key, replica=True)
    assert node is not None, f"no replica serves {key}"
    return int(node.port)


class Load:
    """Submits one XADD per market every ``period_s`` and records each outcome."""

    def __init__(self, batcher: XaddBatcher, period_s: float = 0.02) -> None:
        self.batcher = batcher
        self.period_s = period_s
        self.ok: dict[str, list[float]] = {s: [] for s in SYMBOLS}
        self.failed: dict[str, list[tuple[float, BaseException]]] = {s: [] for s in SYMBOLS}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[str]] = set()

    def start(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _run(self) -> None:
        n = 0
        while True:
            for symbol in SYMBOLS:
                future = self.batcher.submit(in_stream(symbol), {b"c": b"%d" % n})
                self._pending.add(future)
                future.add_done_callback(lambda f, s=symbol: self._done(s, f))
            n += 1
            await asyncio.sleep(self.period_s)

    def _done(self, symbol: str, future: asyncio.Future[str]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.ok[symbol].append(time.monotonic())
        else:
            self.failed[symbol].append((time.monotonic(), exc))

    def longest_gap(self, symbol: str, since: float, until: float) -> float:
        """Longest time without a confirmed XADD of ``symbol`` in ``[since, until]``."""
        times = [since, *(t for t in self.ok[symbol] if since <= t <= until), until]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


async def running(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


async def stopped(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- tests ------------------------------------------------------------------------------


async def test_one_pipeline_per_node_and_every_entry_where_it_belongs(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster) -> None:
    topology = await topology_of(cluster)
    nodes = {topology.node_for(in_stream(s)).name for s in SYMBOLS}
    assert len(nodes) >= 2, nodes
    assert len(topology.groups([out_stream(s) for s in SYMBOLS])) == len(SYMBOLS)
    batcher = XaddBatcher(topology)
    task = await running(batcher.run())
    try:
        futures = {s: [batcher.submit(in_stream(s), {b"c": b"%d" % i}) for i in range(25)]
                   for s in SYMBOLS}
        ids = {s: await asyncio.gather(*fs) for s, fs in futures.items()}
        assert batcher.pipelines == len(nodes)  # every node's XADDs in one round trip
        assert batcher.entries == 100
        for s in SYMBOLS:
            stored = admin.xrange(in_stream(s))
            assert [i.decode() for i, _ in stored] == ids[s]  # in submission order
            assert [f[b"c"] for _, f in stored] == [b"%d" % i for i in range(25)]
    finally:
        await stopped(task)
        await topology.aclose()


async def test_router_delivers_each_markets_reports_in_order_once(
        cluster: LocalCluster, writer: aiocluster.RedisCluster) -> None:
    topology = await topology_of(cluster)
    deliveries = Deliveries()
    router = make_router(topology, deliveries)
    for s in SYMBOLS:  # before the gateway starts: the view is rebuilt by load()
        await publish(writer, s, 1, 2)
    await router.load()
    task = await running(router.run())
    try:
        for s in SYMBOLS:
            await publish(writer, s, 3)
            # An engine after a failover may publish seqs again: 3 and 4 once each.
            await publish(writer, s, 3, 4)
            await publish(writer, s, 2, 3, 4, 5)
        for s in SYMBOLS:  # a sentinel after the duplicates: nothing else came before it
            await publish(writer, s, 6)
        for s in SYMBOLS:
            await deliveries.wait(s, 6)
        assert deliveries.by_symbol == {s: [1, 2, 3, 4, 5, 6] for s in SYMBOLS}
        assert router.duplicates == len(SYMBOLS) * 4
    finally:
        await stopped(task)
        await router.close()
        await topology.aclose()


async def test_moved_after_a_manual_failover_is_followed(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster,
        writer: aiocluster.RedisCluster) -> None:
    """CLUSTER FAILOVER: the old primary stays up as a replica and answers MOVED to the
    batcher's XADDs and the readers' XREADs; both move to the new primary by themselves,
    no XADD is lost or fails, and the other markets' XADDs never wait for it."""
    victim = BTC.symbol
    topology = await topology_of(cluster)
    batcher = XaddBatcher(topology)
    deliveries = Deliveries()
    router = make_router(topology, deliveries)
    feed = MarketFeed(BTC)
    reader = MarketReader(topology, feed, lambda f, b: None)
    await router.load()
    tasks = [await running(t) for t in (batcher.run(), router.run(), reader.run())]
    load = Load(batcher).start()
    try:
        await publish(writer, victim, 1)
        await deliveries.wait(victim, 1)
        await wait_until_async(lambda: feed.seq == 1, what="the feed at seq 1")
        old = primary_port(admin, in_stream(victim))
        new = replica_port(admin, in_stream(victim))
        await wait_until_async(lambda: len(load.ok[victim]) > 5, what="XADDs before")
        started = time.monotonic()
        with redis.Redis.from_url(server_of(cluster, new)[1].url) as promoted:
            promoted.execute_command("CLUSTER", "FAILOVER")
        await wait_until_async(lambda: primary_port(admin, in_stream(victim)) == new,
                               what="the replica promoted")
        promoted_at = time.monotonic()
        await publish(writer, victim, 2)
        await deliveries.wait(victim, 2)
        await wait_until_async(lambda: feed.seq == 2, what="the feed at seq 2")
        count = len(load.ok[victim])
        await wait_until_async(lambda: len(load.ok[victim]) > count + 10,
                               what="XADDs after the failover")
    finally:
        await load.stop()
        await stopped(*tasks)
        await router.close()
    try:
        assert deliveries.by_symbol[victim] == [1, 2]
        assert all(not f for f in load.failed.values()), load.failed  # redirected, not failed
        assert topology.node_for(in_stream(victim)).name.endswith(f":{new}")
        for s in SYMBOLS:
            assert admin.xlen(in_stream(s)) == len(load.ok[s])  # nothing lost, nothing twice
            assert load.longest_gap(s, started, promoted_at) < scaled(1.0), s
        assert old != new
    finally:
        await topology.aclose()


async def test_kill_9_of_a_primary_the_markets_resume_and_the_others_never_stop(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster,
        writer: aiocluster.RedisCluster) -> None:
    victim = SOL.symbol
    topology = await topology_of(cluster)
    victim_port = primary_port(admin, in_stream(victim))
    others = [s for s in SYMBOLS if primary_port(admin, in_stream(s)) != victim_port]
    assert others
    batcher = XaddBatcher(topology)
    deliveries = Deliveries()
    router = make_router(topology, deliveries)
    feed = MarketFeed(SOL)
    reader = MarketReader(topology, feed, lambda f, b: None)
    await router.load()
    tasks = [await running(t) for t in (batcher.run(), router.run(), reader.run())]
    load = Load(batcher).start()
    try:
        for s in SYMBOLS:
            await publish(writer, s, 1)
            await deliveries.wait(s, 1)
        await wait_until_async(lambda: len(load.ok[victim]) > 5, what="XADDs before")
        index, _ = server_of(cluster, victim_port)
        killed = time.monotonic()
        cluster.kill(index)

        async def promoted() -> bool:
            ports = await asyncio.to_thread(cluster.primary_ports)
            return len(ports) == cluster.primaries and victim_port not in ports
        await wait_until_async(promoted, timeout_s=scaled(20), what="a replica promoted")
        promoted_at = time.monotonic()
        for s in others:  # the other markets' reports kept flowing
            await publish(writer, s, 2)
            await deliveries.wait(s, 2)
        count = len(load.ok[victim])
        await wait_until_async(lambda: len(load.ok[victim]) > count + 5,
                               what=f"{victim} XADDs after the failover")
        resumed = load.ok[victim][count]
        await publish(writer, victim, 2)
        await deliveries.wait(victim, 2)
        await wait_until_async(lambda: feed.seq == 2, what="the feed at seq 2")
    finally:
        await load.stop()
        await stopped(*tasks)
        await router.close()
        await topology.aclose()
    for s in others:
        assert not load.failed[s], (s, load.failed[s][:3])
        assert load.longest_gap(s, killed, promoted_at) < scaled(1.0), s
    # The victim's XADDs failed (unconfirmed) while no node served it, then resumed.
    assert load.failed[victim]
    assert resumed - promoted_at < scaled(3.0)
    assert deliveries.by_symbol[victim] == [1, 2]


async def test_replicated_xadds_wait_for_a_replica(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster) -> None:
    topology = await topology_of(cluster, replica_reads=True)
    wait_ms = int(scaled(1000))
    batcher = XaddBatcher(topology, wait_replicas=1, wait_timeout_ms=wait_ms)
    victim = ETH.symbol
    victim_primary = primary_port(admin, in_stream(victim))
    others = [s for s in SYMBOLS if primary_port(admin, in_stream(s)) != victim_primary]
    _, replica = server_of(cluster, replica_port(admin, in_stream(victim)))
    assert replica.pid is not None and others
    task = await running(batcher.run())
    try:
        # WAIT says a replica has them (once every replica is linked: an earlier test's
        # failover may still be settling).
        ids = [await wait_for_success(batcher, s) for s in SYMBOLS]
        assert all(ids)
        before = admin.xlen(in_stream(victim))
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            futures = {s: batcher.submit(in_stream(s), {b"c": b"2"}) for s in SYMBOLS}
            for s in others:
                assert await futures[s]
            with pytest.raises(Unconfirmed):
                await futures[victim]
            assert time.monotonic() - started >= wait_ms / 1000
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        # The unconfirmed entry is in the primary's stream ("may not have been received").
        assert admin.xlen(in_stream(victim)) == before + 1
        assert await wait_for_success(batcher, victim)
    finally:
        await stopped(task)
        await topology.aclose()


async def wait_for_success(batcher: XaddBatcher, symbol: str) -> str:
    deadline = time.monotonic() + scaled(15)
    while True:
        try:
            return await batcher.submit(in_stream(symbol), {b"c": b"again"})
        except Unconfirmed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_replicated_readers_read_from_the_replicas(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster,
        writer: aiocluster.RedisCluster) -> None:
    """The router and the feed reader follow :out on the market's replica: with the
    replica stopped, nothing the primary holds is reported until the replica has it."""
    victim = X1.symbol
    topology = await topology_of(cluster, replica_reads=True)
    deliveries = Deliveries()
    router = make_router(topology, deliveries)
    feed = MarketFeed(X1)
    batches: list[Batch] = []
    reader = MarketReader(topology, feed, lambda f, b: batches.append(b))
    await publish(writer, victim, 1)
    await router.load()
    tasks = [await running(t) for t in (router.run(), reader.run())]
    _, replica = server_of(cluster, replica_port(admin, in_stream(victim)))
    _, primary = server_of(cluster, primary_port(admin, in_stream(victim)))
    assert replica.pid is not None
    try:
        await deliveries.wait(victim, 1)
        await wait_until_async(lambda: feed.seq == 1, what="the feed at seq 1")

        def xreads(server: RedisServer) -> int:
            with redis.Redis.from_url(server.url) as c:
                return sum(1 for c in c.client_list() if c.get("cmd") == "xread")
        assert await asyncio.to_thread(xreads, replica) >= 2  # the router's and the feed's
        assert await asyncio.to_thread(xreads, primary) == 0
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            await publish(writer, victim, 2)  # on the primary only
            await asyncio.sleep(0.5)
            assert deliveries.by_symbol[victim] == [1] and feed.seq == 1
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        await deliveries.wait(victim, 2)
        await wait_until_async(lambda: feed.seq == 2, what="the feed at seq 2")
        assert deliveries.by_symbol[victim] == [1, 2]
    finally:
        await stopped(*tasks)
        await router.close()
        await topology.aclose()


def test_a_topology_on_one_server_is_one_node(tmp_path: Path) -> None:
    """A single server: one node, every key in one group, nothing to refresh."""
    async def scenario() -> None:
        topology = Topology(["redis://127.0.0.1:1/0"])
        try:
            node = topology.node_for("sx:{A}:in")
            assert node == topology.node_for("sx:{B}:out", replica=True) == \
                topology.node_at("10.0.0.1", 7000)
            assert node.name == "127.0.0.1:1"
            assert topology.groups([b"a", b"b", b"c"]) == [[b"a", b"b", b"c"]]
            await topology.refresh()
            assert topology.epoch == 0
        finally:
            await topology.aclose()
    asyncio.run(scenario())


async def test_a_gateway_on_the_cluster_receives_orders_once_a_replica_has_them(
        cluster: LocalCluster, admin: redis.cluster.RedisCluster,
        writer: aiocluster.RedisCluster) -> None:
    """``Gateway(config)`` takes the cluster from ``[redis]``: its backlog monitor measures
    every market (a cluster pipeline), orders reach each market's primary and are
    ``received`` once WAIT saw a replica, and reports come from the replicas."""
    settings = RedisConfig(url=cluster.url, cluster=True, urls=tuple(cluster.urls[1:]),
                           durability="replicated", wait_timeout_ms=1000)
    # Orders straight to the markets (no risk stage): each must reach its market's primary.
    config = msgspec.structs.replace(make_config(), markets=MARKETS, redis=settings,
                                     risk=RiskConfig(enabled=False))
    async with running_gateway(config, None) as (gateway, url):  # type: ignore[arg-type]
        alice = await logged_on(url, ALICE)
        try:
            for m in MARKETS:
                placed = await alice.place(m.symbol, "buy", "limit", "1", "10.00")
                assert placed.status == "received"
                assert admin.xlen(in_stream(m.symbol)) == 1
            await gateway.backlog.refresh()
            assert all(gateway.backlog_of(s) == 1 for s in SYMBOLS)
            await publish(writer, SOL.symbol, 1)  # a report for alice, read on a replica
            report = await next_report(alice)
            assert (report.symbol, report.exec_id) == (SOL.symbol, f"{SOL.symbol}:1")
        finally:
            await alice.close()


async def test_market_data_service_follows_every_market_on_the_cluster(
        cluster: LocalCluster, writer: aiocluster.RedisCluster) -> None:
    """``MarketDataService(redis=...)``: one reader per market, each on its market's node
    (a replica in replicated mode)."""
    settings = RedisConfig(url=cluster.url, cluster=True, durability="replicated")
    service = MarketDataService(MARKETS, None, redis=settings)
    for m in MARKETS:
        await publish(writer, m.symbol, 1)
    try:
        await service.start("127.0.0.1", 0)
        for m in MARKETS:
            await publish(writer, m.symbol, 2)
        await wait_until_async(lambda: all(f.seq == 2 for f in service.feeds.values()),
                               what="every feed at seq 2")
        tails = [r.node for r in service.readers]
        assert all(n is not None and n.replica for n in tails)
    finally:
        await service.close()

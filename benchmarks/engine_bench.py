"""``streamex bench engine``: the engine service on Redis Streams against its floor.

One run, one embedded Redis server (no AOF), one market:

1. pre-fill ``sx:{SYM}:in`` with N realistic orders (``benchmarks.flow``), pipelined;
2. floor: ``XREADGROUP COUNT b`` + ``XACK`` of the same N entries with the same
   batch size (ack and next read pipelined, as the engine does in one script),
   no decoding, no matching, no output;
3. replay: recovery's replay of the N entries into an empty book (XRANGE
   chunks, decode, match, nothing published);
4. engine: ``EngineRunner`` in-process (the service's code path) until the
   last order is committed, including its final snapshot.

The final book is checked against an in-process run of the same flow. The
last stdout line is JSON with ``orders``, ``orders_per_s``, ``floor_per_s``,
``ratio``, ``replay_per_s`` and commit latency percentiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from typing import Any

import matching
from contract.commands import OrderCommand, encode_command
from contract.ids import ZERO_ID, parse_id
from contract.keys import MarketKeys
from contract.market import DEFAULT_MARKETS, Market
from contract.settings import EngineConfig
from contract.snapshot import encode_snapshot
from contract.streams import IN_FIELD
from engine.recovery import replay
from engine.runner import EXIT_OK, EngineRunner
from engine.stage import MarketCore
from engine.topology import Topology
from matching.book import OrderBook
from matching.snapshot import take_snapshot
from streamex.gc_tuning import tune_gc
from streamex.redis_cluster import LocalCluster
from streamex.redis_server import RedisServer

_FLOOR_GROUP = "floor"
_RAW_REPLIES = ("XRANGE", "XREVRANGE", "XREAD", "XREADGROUP", "XAUTOCLAIM")


def _raw_client(url: str) -> Any:
    """A redis-py client whose stream replies stay raw (hiredis lists), like the engine's."""
    import redis

    client = redis.Redis.from_url(url, protocol=2)
    for command in _RAW_REPLIES:
        client.set_response_callback(command, lambda response, **options: response)
    return client


def call(client: Any, *args: Any) -> Any:
    return client.execute_command(*args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=200_000, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=EngineConfig().batch_size,
                        help="XREADGROUP COUNT for engine and floor (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="flow seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--cluster", type=int, metavar="N",
                        help="also run on a local cluster of N primaries + N replicas, after "
                             "the single server, in the same run")


def _flow(market: Market, n: int, seed: int) -> list[tuple[str, OrderCommand]]:
    from benchmarks.flow import realistic_flow

    return realistic_flow(market, n, seed)


def _prefill(client: Any, key: str, flow: list[tuple[str, OrderCommand]]) -> None:
    """XADD every order with its explicit id, 5,000 per pipeline round trip."""
    for i in range(0, len(flow), 5000):
        pipe = client.pipeline(transaction=False)
        for entry_id, cmd in flow[i:i + 5000]:
            pipe.execute_command("XADD", key, entry_id, IN_FIELD, encode_command(cmd))
        pipe.execute()


def _floor(client: Any, key: str, n: int, batch: int) -> float:
    """Seconds to take delivery of and acknowledge ``n`` entries, ``batch`` at a time."""
    call(client, "XGROUP", "CREATE", key, _FLOOR_GROUP, "0")
    read = ("XREADGROUP", "GROUP", _FLOOR_GROUP, "floor", "COUNT", batch, "STREAMS", key, ">")
    started = time.perf_counter()
    reply = call(client, *read)
    done = 0
    while reply:
        ids = [e[0] for e in reply[0][1]]
        done += len(ids)
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("XACK", key, _FLOOR_GROUP, *ids)
        pipe.execute_command(*read)
        _, reply = pipe.execute()
    elapsed = time.perf_counter() - started
    if done != n:
        raise RuntimeError(f"floor read {done} entries, expected {n}")
    return elapsed


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def run(args: argparse.Namespace) -> int:
    if args.orders < 1 or args.batch_size < 1:
        print("streamex bench engine: --orders and --batch-size must be positive",
              file=sys.stderr)
        return 2
    market = DEFAULT_MARKETS[0]
    keys = MarketKeys.of(market.symbol)
    tune_gc()  # as ``streamex engine`` does

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    flow = _flow(market, args.orders, args.seed)
    last_id = flow[-1][0].encode()
    reference = OrderBook(market)
    for entry_id, cmd in flow:
        reference.apply(entry_id, cmd)

    result = _measure(args, market, keys, flow, reference, None, say)
    if result is None:
        return 1
    if args.cluster:
        say(f"-- the same on a local cluster of {args.cluster} primaries + replicas --")
        on_cluster = _measure(args, market, keys, flow, reference, args.cluster, say)
        if on_cluster is None:
            return 1
        result["cluster"] = on_cluster
        result["cluster_vs_single"] = round(on_cluster["orders_per_s"]
                                            / result["orders_per_s"], 3)
        say(f"cluster / single server: {result['cluster_vs_single']:.2f} of the orders/s")
    assert parse_id(last_id) > parse_id(ZERO_ID)
    print(json.dumps(result))
    return 0


def _measure(args: argparse.Namespace, market: Market, keys: MarketKeys,
             flow: list[tuple[str, OrderCommand]], reference: OrderBook, cluster: int | None,
             say: Any) -> dict[str, Any] | None:
    """Floor, replay and engine on one embedded server, or on a ``cluster`` of N primaries
    (the floor then runs against the node that holds the market). None on a wrong result."""
    last_id = flow[-1][0].encode()
    with contextlib.ExitStack() as stack:
        if cluster is None:
            server = stack.enter_context(RedisServer())
            node_url, seeds = server.url, [server.url]
        else:
            local = stack.enter_context(LocalCluster(primaries=cluster))
            node_url, seeds = local.node_of(keys.input).url, local.urls
        client = _raw_client(node_url)
        version = client.info("server")["redis_version"]
        _prefill(client, keys.input, flow)
        say(f"prefilled {len(flow)} orders into {keys.input} (redis {version})")

        floor_s = _floor(client, keys.input, len(flow), args.batch_size)
        say(f"floor  XREADGROUP+XACK  {len(flow) / floor_s:12,.0f} entries/s")

        book = OrderBook(market)
        started = time.perf_counter()
        topology = Topology(seeds, cluster=cluster is not None)
        replayed, _ = replay(topology, MarketCore(book), keys, ZERO_ID, last_id)
        topology.close()
        replay_s = time.perf_counter() - started
        say(f"replay (no publish)     {replayed / replay_s:12,.0f} orders/s")

        settings = EngineConfig(batch_size=args.batch_size, snapshot_every=2**31 - 1,
                                snapshot_interval_s=3600.0)
        runner = EngineRunner(seeds, [market], settings, "bench", stats_interval_s=3600.0,
                              record_latencies=True, cluster=cluster is not None)
        started = time.perf_counter()
        code = runner.run(until_applied={market.symbol: last_id})
        engine_s = time.perf_counter() - started
        stats = runner.stats(market.symbol)
        out_len = client.xlen(keys.output)
        client.close()

    same = (encode_snapshot(take_snapshot(runner.book(market.symbol)))
            == encode_snapshot(take_snapshot(reference)))
    replay_same = encode_snapshot(take_snapshot(book)) == encode_snapshot(take_snapshot(reference))
    if code != EXIT_OK or stats.applied != len(flow) or not same or not replay_same:
        print(f"streamex bench engine: wrong result: exit {code}, applied {stats.applied} of "
              f"{len(flow)}, engine book same={same}, replay book same={replay_same}",
              file=sys.stderr)
        return None
    lat = stats.commit_latencies_s
    result: dict[str, Any] = {
        "bench": "engine",
        "orders": len(flow),
        "batch_size": args.batch_size,
        "orders_per_s": round(len(flow) / engine_s),
        "floor_per_s": round(len(flow) / floor_s),
        "ratio": round(floor_s / engine_s, 3),
        "replay_per_s": round(replayed / replay_s),
        "batches": stats.batches,
        "out_entries": out_len,
        "events": reference.seq,
        "commit_ms_p50": round(_pct(lat, 0.5) * 1000, 3),
        "commit_ms_p99": round(_pct(lat, 0.99) * 1000, 3),
        "commit_ms_p999": round(_pct(lat, 0.999) * 1000, 3),
        "commit_ms_max": round(max(lat) * 1000, 3),
        "engine_s": round(engine_s, 3),
        "redis": version,
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
        "compiled": matching.COMPILED,
    }
    say(f"engine (service path)   {result['orders_per_s']:12,} orders/s  "
        f"ratio {result['ratio']:.2f} of floor; {stats.batches} batches, commit p50 "
        f"{result['commit_ms_p50']} ms p99 {result['commit_ms_p99']} ms "
        f"p99.9 {result['commit_ms_p999']} ms max {result['commit_ms_max']} ms "
        f"(load {result['load_1m']}; core "
        f"{'compiled' if matching.COMPILED else 'pure Python'})")
    return result

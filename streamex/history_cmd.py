"""``streamex history``: copy every market's and risk shard's events into the history database.

Usage: ``streamex history --config FILE [--redis-url URL] [--db URL]
[--metrics-host HOST] [--metrics-port PORT]``.
Redis is ``[redis]`` of the config (one server or a cluster's seeds) with
``--redis-url`` as the first seed; the database is ``--db``, else
``[history] url`` (``sqlite:///<absolute path>`` or ``postgresql://...``;
``streamex up`` sets it). It follows every configured market's ``:out`` and,
with the risk stage on, every risk shard's, from the positions stored in the
database, exactly once (``history.service``). Logs ``event=ready
service=history`` once it has caught up.

Operations: with a metrics port (``--metrics-port``, else ``[history]
metrics_port``; 0: any free port) and ``[metrics] enabled``, it serves
``/metrics`` (``history.metrics``), ``/healthz`` and ``/readyz`` (the
database and Redis reachable, every stream caught up) and logs
``event=metrics service=history url=http://HOST:PORT/metrics`` once it
listens. It registers itself in Redis as service ``history``
(``ops.registry.keep_registered``) while it runs.

Exit codes: 0 after SIGTERM/SIGINT, 1 when the database or Redis cannot be
set up, 2 for bad arguments or configuration or a metrics port that cannot be
bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import redis

from contract.settings import Config
from ops.registry import keep_registered, new_registration
from streamex.config import ConfigError, service_config
from streamex.engine_cmd import Ops, add_metrics_arguments, open_ops
from streamex.gc_tuning import tune_gc
from streamex.logs import add_log_level, setup_logging

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--db", default=None,
                        help="database URL, sqlite:///PATH or postgresql://... "
                             "(default: the config's [history] url)")
    parser.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                        help="how often to log counters (default: %(default)s)")
    add_metrics_arguments(parser, "history")
    add_log_level(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, redis_url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex history: {exc}", file=sys.stderr)
        return EXIT_USAGE
    db_url = args.db or config.history.url
    if not db_url:
        print("streamex history: no database: pass --db or set [history] url in the config",
              file=sys.stderr)
        return EXIT_USAGE
    if not db_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        print("streamex history: --db: must start with sqlite:///, postgresql:// or "
              "postgres://", file=sys.stderr)
        return EXIT_USAGE
    if args.stats_interval <= 0:
        print("streamex history: --stats-interval: must be positive", file=sys.stderr)
        return EXIT_USAGE
    ops = open_ops("streamex history", "history", args, config, config.history.metrics_host,
                   config.history.metrics_port)
    if isinstance(ops, int):
        return ops
    import uvloop

    try:
        return uvloop.run(_serve(args, config, redis_url, db_url, ops))
    finally:
        if ops is not None:
            ops.close()


async def _serve(args: argparse.Namespace, config: Config, redis_url: str, db_url: str,
                 ops: Ops | None) -> int:
    from history.metrics import HistoryMetrics
    from history.service import HistoryService
    from redisio.topology import Topology
    from store.db import StoreError, display_url, open_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        store = await asyncio.to_thread(open_store, db_url)
    except (StoreError, ValueError, OSError) as exc:
        print(f"streamex history: {display_url(db_url)}: {exc}", file=sys.stderr)
        return 1
    seeds = (redis_url, *(u for u in config.redis.urls if u != redis_url))
    topology = Topology(seeds, cluster=config.redis.cluster,
                        replica_reads=config.redis.durability == "replicated")
    try:
        try:
            await topology.initialize()
        except (OSError, redis.RedisError) as exc:
            print(f"streamex history: redis: {exc}", file=sys.stderr)
            return 1
        shards = range(config.risk.shards) if config.risk.enabled else range(0)
        metrics = None if ops is None else HistoryMetrics(ops.registry)
        service = HistoryService(store, topology, [m.symbol for m in config.markets], shards,
                                 batch_entries=config.history.batch_entries,
                                 read_interval_s=config.history.read_interval_ms / 1000,
                                 stats_interval_s=args.stats_interval, metrics=metrics)
        url = None
        if ops is not None:
            ops.health.add_check("redis", service.redis_problem)
            ops.health.add_check("database", service.database_problem)
            ops.health.add_check("caught_up", service.lag_problem)
            url = ops.start()
        registration = new_registration("history", urls={"metrics": url} if url else {})
        registered = asyncio.create_task(keep_registered(topology.client, registration))
        tune_gc()
        try:
            await service.run(stop)
        finally:
            registered.cancel()
            await asyncio.gather(registered, return_exceptions=True)
        return 0
    finally:
        await topology.aclose()
        store.close()

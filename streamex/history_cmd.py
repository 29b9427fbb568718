"""``streamex history``: copy every market's and risk shard's events into the history database.

Usage: ``streamex history --config FILE [--redis-url URL] [--db URL]``.
Redis is ``[redis]`` of the config (one server or a cluster's seeds) with
``--redis-url`` as the first seed; the database is ``--db``, else
``[history] url`` (``sqlite:///<absolute path>`` or ``postgresql://...``;
``streamex up`` sets it). It follows every configured market's ``:out`` and,
with the risk stage on, every risk shard's, from the positions stored in the
database, exactly once (``history.service``). Logs ``event=ready
service=history`` once it has caught up. Exit codes: 0 after SIGTERM/SIGINT,
1 when the database or Redis cannot be set up, 2 for bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import redis

from contract.settings import Config
from streamex.config import ConfigError, service_config
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
    import uvloop

    return uvloop.run(_serve(args, config, redis_url, db_url))


async def _serve(args: argparse.Namespace, config: Config, redis_url: str, db_url: str) -> int:
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
        service = HistoryService(store, topology, [m.symbol for m in config.markets], shards,
                                 batch_entries=config.history.batch_entries,
                                 stats_interval_s=args.stats_interval)
        tune_gc()
        await service.run(stop)
        return 0
    finally:
        await topology.aclose()
        store.close()

"""``streamex risk``: run the risk engine (balances, holds, fees) for some account shards.

Usage: ``streamex risk --config FILE [--shards 0,1] [--consumer NAME]
[--redis-url URL] [--metrics-host HOST] [--metrics-port PORT]``. Each shard
is served like a market by the engine runner (lease, epoch, commit script,
snapshots, replay; ``engine.runner``), with a settler thread per shard
copying the markets' outcomes into the shard's input (``risk.settler``). At
start it adds the configured ``[[accounts]] balances`` of its shards as
deposits with refs ``initial:<account>:<asset>`` (applied once, whatever the
restarts). A second process for the same shards is a hot standby. Metrics,
health and registration as ``streamex engine`` (service ``risk``, ``[risk]
metrics_host``/``metrics_port``; its stages are ``acct-K``). Exit codes as
``streamex engine``: 0 after SIGTERM/SIGINT, 1 fatal, 2 bad arguments or
configuration (or a metrics port that cannot be bound), 3 fenced.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import socket
import sys
import types

import redis

from contract.market import parse_units
from contract.risk import Deposit, encode_risk_command, risk_keys, risk_shard, risk_tag
from contract.settings import Config
from contract.streams import IN_FIELD
from engine.runner import EngineRunner
from risk.settler import Settler
from risk.stage import RiskStage
from streamex.config import ConfigError, service_config
from streamex.engine_cmd import add_metrics_arguments, open_ops, serve_engine
from streamex.gc_tuning import tune_gc
from streamex.logs import add_log_level, setup_logging

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--shards", default=None,
                        help="comma-separated shard numbers to serve (default: all of "
                             "[risk] shards)")
    parser.add_argument("--consumer", default=None,
                        help="this engine's name in the lease and consumer group "
                             "(default: HOST-PID); reuse it on restart to take over at once")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                        help="how often to log counters (default: %(default)s)")
    add_metrics_arguments(parser, "risk")
    add_log_level(parser)


def initial_deposits(config: Config, shard: int) -> list[Deposit]:
    """The ``[[accounts]] balances`` of ``shard``'s accounts as deposits (idempotent refs)."""
    units = config.asset_units
    deposits = []
    for account in config.accounts:
        if risk_shard(account.id, config.risk.shards) != shard:
            continue
        for asset, amount in sorted(account.balances.items()):  # checked by Config
            deposits.append(Deposit(account.id, asset, parse_units(amount, units[asset]),
                                    f"initial:{account.id}:{asset}"))
    return deposits


def _add_initial_deposits(url: str, config: Config, shards: list[int]) -> None:
    """XADD each shard's initial deposits (a ref seen before changes nothing)."""
    client = redis.Redis.from_url(url) if not config.redis.cluster else \
        redis.RedisCluster.from_url(url)
    try:
        for shard in shards:
            for deposit in initial_deposits(config, shard):
                client.xadd(risk_keys(shard).input, {IN_FIELD: encode_risk_command(deposit)})
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex risk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    count = config.risk.shards
    if args.shards:
        try:
            shards = sorted({int(s) for s in args.shards.split(",") if s.strip()})
        except ValueError:
            shards = []
        if not shards or any(not 0 <= s < count for s in shards):
            print(f"streamex risk: --shards: must be numbers in 0..{count - 1}", file=sys.stderr)
            return EXIT_USAGE
    else:
        shards = list(range(count))
    if args.stats_interval <= 0:
        print("streamex risk: --stats-interval: must be positive", file=sys.stderr)
        return EXIT_USAGE
    ops = open_ops("streamex risk", "risk", args, config, config.risk.metrics_host,
                   config.risk.metrics_port)
    if isinstance(ops, int):
        return ops
    _add_initial_deposits(url, config, shards)
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    seeds = (url, *(u for u in config.redis.urls if u != url))
    stages = [RiskStage(s, config.markets, config.risk.fee_account) for s in shards]
    runner = EngineRunner(seeds, stages, config.engine, consumer,
                          stats_interval_s=args.stats_interval, cluster=config.redis.cluster)
    symbols = [m.symbol for m in config.markets]
    settlers = [Settler(seeds, symbols, s, count, functools.partial(runner.epoch_of, risk_tag(s)),
                        cluster=config.redis.cluster) for s in shards]

    def stop(signum: int, frame: types.FrameType | None) -> None:
        runner.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tune_gc()
    threads = [s.start_thread() for s in settlers]
    try:
        return serve_engine("risk", runner, ops, seeds, config.redis.cluster)
    finally:
        for settler in settlers:
            settler.stop()
        for thread in threads:
            thread.join(timeout=5)

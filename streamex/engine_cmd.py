"""``streamex engine``: run the matching engine for some markets against a Redis server.

Usage: ``streamex engine --config FILE [--markets A,B] [--consumer NAME]
[--redis-url URL]``. The Redis URL comes from ``--redis-url``, else the
config's ``[redis] url``; the engine never starts a server itself. Start a
second process for the same markets to get a hot standby. Logs are logfmt
lines on stderr (``streamex.logs``); counters every ``--stats-interval`` s.
Exit codes: 0 after SIGTERM/SIGINT (snapshot written), 1 on
a fatal error, 2 on bad arguments or configuration, 3 when another engine
took the market over (this one was fenced).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import types

from engine.runner import EngineRunner
from streamex.config import ConfigError, service_config
from streamex.gc_tuning import tune_gc
from streamex.logs import add_log_level, setup_logging

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--markets", default=None,
                        help="comma-separated symbols to serve (default: every configured market)")
    parser.add_argument("--consumer", default=None,
                        help="this engine's name in the lease and consumer group "
                             "(default: HOST-PID); reuse it on restart to take over at once")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                        help="how often to log counters (default: %(default)s)")
    add_log_level(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex engine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.markets:
        symbols = [s.strip() for s in args.markets.split(",") if s.strip()]
        unknown = [s for s in symbols if s not in config.markets_by_symbol]
        if unknown or not symbols:
            print(f"streamex engine: --markets: not configured: {', '.join(unknown) or '(none)'}"
                  f" (configured: {', '.join(config.markets_by_symbol)})", file=sys.stderr)
            return EXIT_USAGE
        markets = [config.market(s) for s in dict.fromkeys(symbols)]
    else:
        markets = list(config.markets)
    if args.stats_interval <= 0:
        print("streamex engine: --stats-interval: must be positive", file=sys.stderr)
        return EXIT_USAGE
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    seeds = (url, *(u for u in config.redis.urls if u != url))
    runner = EngineRunner(seeds, markets, config.engine, consumer,
                          stats_interval_s=args.stats_interval, cluster=config.redis.cluster)

    def stop(signum: int, frame: types.FrameType | None) -> None:
        runner.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tune_gc()
    return runner.run()

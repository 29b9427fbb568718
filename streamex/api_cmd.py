"""``streamex api``: the Binance-compatible REST service (PROTOCOL.md, section D) in the foreground.

``streamex api --config FILE [--redis-url URL] [--db URL] [--host H --port P]``.
Redis is ``[redis]`` of the config with ``--redis-url`` as the first seed;
the history database is ``--db`` (``sqlite:///<path>`` or ``postgresql://``),
else ``[history] url``; without either, the history endpoints (closed
orders, all orders, trades, klines, 24-hour tickers) answer 503. Listens on
``[api]`` host and port (``--port 0``: any free one) and logs
``event=listening service=api url=http://HOST:PORT/`` once it accepts
requests, then, with ``[metrics] enabled``, ``event=metrics service=api
url=http://HOST:PORT/metrics`` (``/healthz`` and ``/readyz`` answer on the same
port either way). Registers itself in Redis as service ``api``
(``ops.registry``) while it runs. Runs on uvloop until SIGINT/SIGTERM, then
stops and exits 0; exit 1 when Redis or the database cannot be reached, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import redis
import uvloop

from contract.settings import Config
from store.db import StoreError
from streamex.config import ConfigError, service_config
from streamex.gc_tuning import tune_gc
from streamex.logs import setup_logging
from streamex.service_cmd import add_service_arguments, serve_until_stopped

log = logging.getLogger("streamex.api")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser, "api")
    parser.add_argument("--db", help="history database URL, sqlite:///PATH or postgresql://... "
                                     "(default: the config's [history] url)")


async def _serve(args: argparse.Namespace, config: Config, redis_url: str) -> int:
    from api.service import ApiService

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with ApiService(config, redis_url, args.db) as service:
        host, port = await service.start(args.host, args.port)
        tune_gc()
        log.info("event=listening service=api url=http://%s:%d/", host, port)
        ended = await serve_until_stopped(
            "api", service.serve_forever(), stop, service.gateway.redis,
            {"http": f"http://{host}:{port}/"}, service.metrics_url)
        if ended is not None:
            ended.result()  # a task failed: raise its error
            return 1
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, redis_url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex api: {exc}", file=sys.stderr)
        return 2
    try:
        return uvloop.run(_serve(args, config, redis_url))
    except ValueError as exc:
        print(f"streamex api: {exc}", file=sys.stderr)
        return 2
    except (OSError, redis.RedisError, StoreError) as exc:
        print(f"streamex api: {exc}", file=sys.stderr)
        return 1

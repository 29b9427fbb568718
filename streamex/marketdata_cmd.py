"""``streamex marketdata``: the public market-data websocket service.

Follows every configured market's engine snapshot and event stream on Redis
(one server, or a cluster: ``[redis] cluster``, ``--redis-url`` the first
seed; read from replicas with ``durability = "replicated"``) and serves
``book``, ``trades``, ``ticker``, ``candles`` and ``heartbeat`` to websocket
subscribers (PROTOCOL.md). Candles, 24-hour statistics and the trades
snapshot start from the history database (``--db``, else the config's
``[history] url``; without one they start empty at the engine snapshot).
Logs ``event=listening service=marketdata url=ws://HOST:PORT/`` once the
snapshots and history are loaded and the port is bound (with ``--port 0``
this names the port picked), then, with ``[metrics] enabled``, ``event=metrics
service=marketdata url=http://HOST:PORT/metrics`` (the same port answers
``/healthz`` and ``/readyz``). Registers itself in Redis as service
``marketdata`` (``ops.registry``) while it runs. Stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import redis

from contract.settings import Config
from marketdata.outbox import DEFAULT_LIMIT
from streamex.config import ConfigError, service_config
from streamex.gc_tuning import tune_gc
from streamex.logs import setup_logging
from streamex.service_cmd import add_service_arguments, log_listening, serve_until_stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser, "marketdata")
    parser.add_argument("--queue-limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help="frames queued per connection before it counts as a slow consumer "
                             "(default: %(default)s)")
    parser.add_argument("--db", metavar="URL",
                        help="history database to start candles and trades from: "
                             "sqlite:///PATH or postgresql://... (default: the config's "
                             "[history] url; none: they start empty)")


def run(args: argparse.Namespace) -> int:
    try:
        config, redis_url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex marketdata: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.marketdata.host
    port = config.marketdata.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        print("streamex marketdata: --port: must be in 0..65535", file=sys.stderr)
        return 2
    if args.queue_limit < 1:
        print("streamex marketdata: --queue-limit: must be positive", file=sys.stderr)
        return 2
    db = args.db or config.history.url
    if db is not None and not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
        print("streamex marketdata: --db: must start with sqlite:///, postgresql:// or "
              "postgres://", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    import uvloop

    try:
        return uvloop.run(_serve(config, redis_url, host, port, args.queue_limit, db))
    except KeyboardInterrupt:
        return 0


async def _serve(config: Config, redis_url: str, host: str, port: int, queue_limit: int,
                 db: str | None) -> int:
    from marketdata.service import MarketDataService

    md = config.marketdata
    # --redis-url (else [redis] url) is the first seed; [redis] says cluster or not.
    service = MarketDataService(config.markets, redis_url, redis=config.redis,
                                queue_limit=queue_limit, request_rate=md.request_rate,
                                request_burst=md.request_burst, history_url=db,
                                metrics=config.metrics.enabled)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start(host, port)
    except (OSError, TimeoutError, redis.RedisError) as exc:
        print(f"streamex marketdata: cannot start: {exc}", file=sys.stderr)
        await service.close()
        return 1
    tune_gc()
    log_listening("marketdata", host, service.port)
    try:
        ended = await serve_until_stopped(
            "marketdata", service.wait(), stop, service.redis_client,
            {"ws": f"ws://{host}:{service.port}/"}, service.metrics_url)
    finally:
        await service.close()
    if ended is not None and not ended.cancelled() and ended.exception() is not None:
        print(f"streamex marketdata: stopped: {ended.exception()!r}", file=sys.stderr)
        return 1
    return 0

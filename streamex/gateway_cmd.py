"""``streamex gateway``: the order-entry websocket gateway in the foreground.

Redis is ``[redis]`` of the config (one server, or a cluster's seeds) with
``--redis-url`` as the first seed. Runs on uvloop until SIGINT/SIGTERM, then
closes connections (sending the cancel-on-disconnect commands) and exits 0.
Logs ``event=listening service=gateway url=ws://HOST:PORT/`` once it accepts
connections (with ``--port 0``, the port picked), then, with ``[metrics]
enabled``, ``event=metrics service=gateway url=http://HOST:PORT/metrics`` (the
same port also answers ``/healthz`` and ``/readyz``). Registers itself in Redis
as service ``gateway`` (``ops.registry``) while it runs. Exit code 1 on a bad config
or unreachable Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import redis
import uvloop

from contract.settings import Config
from streamex.config import ConfigError, service_config
from streamex.gc_tuning import tune_gc
from streamex.logs import setup_logging
from streamex.service_cmd import add_service_arguments, log_listening, serve_until_stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser, "gateway")


async def _serve(args: argparse.Namespace, config: Config, redis_url: str) -> int:
    from gateway.server import Gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # config.redis: one server or a cluster, durability; redis_url (--redis-url, else
    # [redis] url) is its first seed.
    async with Gateway(config, redis_url) as gateway:
        host, port = await gateway.start(args.host, args.port)
        tune_gc()
        log_listening("gateway", host, port)
        ended = await serve_until_stopped(
            "gateway", gateway.serve_forever(), stop, gateway.redis,
            {"ws": f"ws://{host}:{port}/"}, gateway.metrics_url)
        if ended is not None:
            ended.result()  # a task failed: raise its error
            return 1
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, redis_url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex gateway: {exc}", file=sys.stderr)
        return 2
    try:
        return uvloop.run(_serve(args, config, redis_url))
    except (OSError, redis.RedisError) as exc:
        print(f"streamex gateway: {exc}", file=sys.stderr)
        return 1

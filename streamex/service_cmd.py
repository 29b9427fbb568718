"""What the service commands share: arguments, the ready lines, serving until stopped.

Each service logs one ``event=listening url=ws://HOST:PORT/`` line once it
accepts connections (with ``--port 0``, the port picked): wait for it to
know the service is ready; with metrics on, one ``event=metrics
url=http://HOST:PORT/metrics`` line (:func:`log_metrics`). While it serves it
keeps its registration in Redis (:func:`serve_until_stopped`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis

from ops.registry import keep_registered, new_registration
from streamex.logs import add_log_level


def add_service_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """``--config``, ``--redis-url``, ``--host``, ``--port``, ``--log-level``."""
    parser.add_argument("--config", help="TOML configuration file (default: built-in markets)")
    parser.add_argument("--redis-url", help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--host", help=f"address to listen on (default: [{section}] host)")
    parser.add_argument("--port", type=int,
                        help=f"port to listen on, 0 for any free one (default: [{section}] port)")
    add_log_level(parser)


def log_listening(service: str, host: str, port: int) -> None:
    """The ready line: ``event=listening service=gateway url=ws://127.0.0.1:8001/``."""
    logging.getLogger(f"streamex.{service}").info(
        "event=listening service=%s url=ws://%s:%d/", service, host, port)


def log_metrics(service: str, url: str) -> None:
    """The metrics line: ``event=metrics service=gateway url=http://HOST:PORT/metrics``."""
    logging.getLogger(f"streamex.{service}").info("event=metrics service=%s url=%s",
                                                  service, url)


async def serve_until_stopped(service: str, serving: Coroutine[Any, Any, object],
                              stop: asyncio.Event,
                              client: aioredis.Redis | aioredis.RedisCluster | None,
                              urls: dict[str, str], metrics_url: str | None = None
                              ) -> asyncio.Task[object] | None:
    """Run ``serving`` until it ends or ``stop`` is set, registered as ``service`` (by
    ``client``; None: not registered) with ``urls`` and the metrics URL, whose line is
    logged first. Returns the serving task if it ended first (the caller reads its
    error), None after a stop (it was cancelled)."""
    if metrics_url is not None:
        log_metrics(service, metrics_url)
        urls = {**urls, "metrics": metrics_url}
    registered = (None if client is None else asyncio.create_task(
        keep_registered(client, new_registration(service, urls=urls))))
    task = asyncio.create_task(serving)
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if registered is not None:
            registered.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await registered
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task if task in done else None

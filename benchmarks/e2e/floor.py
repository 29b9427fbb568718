"""The floor of a run: what one order's path costs at the least, measured on the idle exchange.

A websocket echo round trip (the load's own client, :mod:`benchmarks.ws_client`,
against :mod:`benchmarks.echo_server` in this process, timestamps taken on
frame arrival as the load's are) and a Redis ``PING`` round trip with
redis-py's asyncio client (the exchange's own client library, without a
socket timeout, its fastest configuration), plus a raw-socket ``PING``, over
the URL the exchange's services use. Cost: ``samples + samples // 10``
sequential round trips of each kind (the first tenth is not recorded), a
fraction of a second at the default 2,000.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from redis.connection import parse_url

from benchmarks.echo_server import echo_server, port_of
from benchmarks.histogram import Histogram
from benchmarks.ws_client import open_connection


async def measure_floor(floor: dict[str, Histogram], frame: bytes, redis_url: str | None,
                        samples: int) -> None:
    """Fill ``floor``: ``"ws"`` (echo of ``frame``), then with ``redis_url`` ``"redis"`` and
    ``"redis_raw"`` (when a plain socket reaches it)."""
    ws_hist = Histogram()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[int] = loop.create_future()

    def echoed(_: bytes, now: int) -> None:
        if not waiter.done():
            waiter.set_result(now)

    # The load's own client against a server of the gateway's library; both
    # timestamps are taken like the load's (arrival of the frame).
    async with echo_server() as server:
        conn = await open_connection(f"ws://127.0.0.1:{port_of(server)}/", echoed)
        try:
            for k in range(samples + samples // 10):
                waiter = loop.create_future()
                t = time.monotonic_ns()
                conn.send(frame)
                arrived = await asyncio.wait_for(waiter, 10)
                if k >= samples // 10:
                    ws_hist.record(arrived - t)
        finally:
            await conn.close()
    floor["ws"] = ws_hist
    if redis_url is None:
        return
    # No socket_timeout: redis-py then skips an asyncio.timeout per read (its fastest path).
    client = aioredis.Redis.from_url(redis_url, socket_timeout=None)
    hist = Histogram()
    try:
        for k in range(samples + samples // 10):
            t = time.monotonic_ns()
            await client.ping()
            if k >= samples // 10:
                hist.record(time.monotonic_ns() - t)
    finally:
        await client.aclose()
    floor["redis"] = hist
    raw_hist = await raw_ping(redis_url, samples)
    if raw_hist is not None:
        floor["redis_raw"] = raw_hist


async def raw_ping(url: str, samples: int) -> Histogram | None:
    """PING round trips over a plain socket (RESP by hand): the network + server floor."""
    try:
        where = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    if "connection_class" in where and "path" not in where:
        return None  # TLS: a plain socket cannot speak to it
    if "path" in where:
        reader, writer = await asyncio.open_unix_connection(where["path"])
    else:
        reader, writer = await asyncio.open_connection(where.get("host", "localhost"),
                                                       where.get("port", 6379))
    hist = Histogram()
    try:
        if where.get("password"):  # the embedded servers need it: log in first, untimed
            auth = [b"AUTH", *([where["username"].encode()] if where.get("username") else []),
                    where["password"].encode()]
            writer.write(b"*%d\r\n" % len(auth)
                         + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in auth))
            if not (await reader.readline()).startswith(b"+OK"):
                return None
        for k in range(samples + samples // 10):
            t = time.monotonic_ns()
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            line = await reader.readline()
            if k >= samples // 10 and line.startswith(b"+PONG"):
                hist.record(time.monotonic_ns() - t)
    finally:
        writer.close()
        await writer.wait_closed()
    return hist

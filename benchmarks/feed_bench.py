"""``streamex bench feed``: market-data latency from commit to each subscriber.

Setup: an embedded Redis, one ``streamex marketdata`` process, and this
process playing the engine: it builds each ``sx:{BTC-USD}:out`` entry with a
real ``OrderBook`` (one resting order and one taker that trades with it, so
every entry makes exactly one ``trades`` message) and XADDs it open-loop at
``--rate`` entries/s. N subscribers (the load generators' picows client,
:mod:`benchmarks.ws_client`, on one uvloop: frames parsed in C, one callback
per frame, so the harness adds little) subscribe to trades.

Latency = arrival of the trades message at a subscriber (``monotonic_ns``
taken when the frame arrives, in the transport's ``data_received``) minus the
time just before the XADD of its entry was sent: it covers Redis, the feed's
XREAD, decode, encode, fan-out, the socket and the subscriber's loop.
Reported per subscriber count (default 1, 100, 1000): p50/p99/p99.9/max over
every (entry, subscriber) pair, plus messages lost (must be 0). The floor,
measured in the same run: the websocket echo round trip (same client,
against :mod:`benchmarks.echo_server` in its own process) and the Redis PING
round trip. ``--json`` prints a JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from benchmarks.ws_client import BenchConnection, open_connection
from contract.commands import Place
from contract.events import Event, Trade, encode_events
from contract.keys import out_stream
from contract.market import DEFAULT_MARKETS
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from matching.book import OrderBook
from streamex.redis_server import RedisServer

MARKET = DEFAULT_MARKETS[0]
DEFAULT_SUBSCRIBERS = (1, 100, 1000)
MSGS_PER_S_BUDGET = 40_000
"""Default rate: at most this many messages/s in total (rate = budget / subscribers, <= 500)."""
WARMUP_ENTRIES = 20

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, action="append", metavar="N",
                        help="subscriber count (repeatable; default: 1, 100 and 1000)")
    parser.add_argument("--rate", type=float, default=None,
                        help=f"entries/s (default: {MSGS_PER_S_BUDGET:,} / subscribers, max 500)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")


# -- measurement ------------------------------------------------------------------------


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    n = len(s)
    if not n:
        return {"p50_us": 0.0, "p99_us": 0.0, "p999_us": 0.0, "max_us": 0.0}

    def at(q: float) -> float:
        return round(s[min(n - 1, int(q * n))] / 1000.0, 1)

    return {"p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999),
            "max_us": round(s[-1] / 1000.0, 1)}


def _seq_of(payload: bytes) -> int:
    i = payload.index(b'"seq":') + 6
    j = payload.index(b",", i)
    return int(payload[i:j])


@dataclass
class Engine:
    """Builds ``:out`` entries with one trade each, from a real OrderBook."""

    book: OrderBook = field(default_factory=lambda: OrderBook(MARKET))
    n: int = 0

    def entry(self) -> tuple[dict[bytes, bytes], int]:
        """Fields of the next ``:out`` entry and the seq of its trade."""
        ms = time.time_ns() // 1_000_000
        price = 5_000_000 + self.n % 100
        ids = (f"{ms}-{2 * self.n}", f"{ms}-{2 * self.n + 1}")
        self.n += 1
        events: list[Event] = []
        events += self.book.apply(ids[0], Place("maker", "sell", "limit", 1, price))
        events += self.book.apply(ids[1], Place("taker", "buy", "limit", 1, price, tif="IOC"))
        trade_seq = next(e.seq for e in events if isinstance(e, Trade))
        return {OUT_EVENTS_FIELD: encode_events(events), OUT_INPUT_FIELD: ids[1].encode()}, \
            trade_seq


async def floor(echo_url: str, client: aioredis.Redis, rounds: int = 2000
                ) -> dict[str, dict[str, float]]:
    """Websocket echo and Redis PING round trips, sequential."""
    got: asyncio.Queue[int] = asyncio.Queue()
    ws = await open_connection(echo_url, lambda payload, now: got.put_nowait(now))
    rtts: list[int] = []
    for _ in range(rounds):
        t0 = time.monotonic_ns()
        ws.send(b'{"ping":1}')
        rtts.append(await got.get() - t0)
    await ws.close()
    pings: list[int] = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        await client.ping()
        pings.append(time.perf_counter_ns() - t0)
    return {"ws_echo_rtt": percentiles(rtts), "redis_ping_rtt": percentiles(pings)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def measure(url: str, client: aioredis.Redis, engine: Engine, subscribers: int,
                  rate: float, duration: float, feed_pid: int) -> dict[str, Any]:
    """One run: ``subscribers`` trades subscribers, ``rate * duration`` entries."""
    sent_at: dict[int, int] = {}
    latencies: list[int] = []
    warm_seq = [1 << 62]
    expected = [1 << 62]
    done = asyncio.Event()

    def on_text(payload: bytes, now: int) -> None:
        if payload.startswith(b'{"channel":"trades"'):
            seq = _seq_of(payload)
            if seq >= warm_seq[0]:
                latencies.append(now - sent_at[seq])
                if len(latencies) >= expected[0]:
                    done.set()

    clients: list[BenchConnection] = []
    for i in range(0, subscribers, 50):
        clients += await asyncio.gather(*(open_connection(url, on_text)
                                          for _ in range(min(50, subscribers - i))))
    sub = json.dumps({"id": 1, "method": "subscribe",
                      "params": {"channel": "trades", "symbol": MARKET.symbol}}).encode()
    for c in clients:
        c.send(sub)
    await asyncio.sleep(0.5)
    key = out_stream(MARKET.symbol)
    entries = max(WARMUP_ENTRIES + 1, int(rate * duration))
    expected[0] = (entries - WARMUP_ENTRIES) * subscribers
    period = 1.0 / rate
    feed_cpu = cpu_seconds(feed_pid)
    own_cpu = time.process_time()
    start = time.perf_counter()
    first_seq = 0
    for k in range(entries):
        fields, seq = engine.entry()
        if k == WARMUP_ENTRIES:
            warm_seq[0] = first_seq = seq
        delay = start + k * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[seq] = time.monotonic_ns()  # the clients' clock
        await client.xadd(key, fields)  # type: ignore[arg-type]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30.0)
    elapsed = time.perf_counter() - start
    feed_cpu = cpu_seconds(feed_pid) - feed_cpu
    own_cpu = time.process_time() - own_cpu
    await asyncio.gather(*(c.close() for c in clients))
    return {"subscribers": subscribers, "rate": rate, "entries": entries,
            "measured_from_seq": first_seq, "samples": len(latencies),
            "lost": expected[0] - len(latencies), "seconds": round(elapsed, 2),
            "feed_cpu_s": round(feed_cpu, 2), "bench_cpu_s": round(own_cpu, 2),
            **percentiles(latencies)}


def _start_child(args: list[str], what: str) -> tuple[subprocess.Popen[bytes], str]:
    # The services log (their ready line included) on stderr: read both.
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    line = proc.stdout.readline().decode() if ready else ""
    if not line:
        proc.kill()
        raise RuntimeError(f"{what} did not start")
    return proc, line.strip()


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    counts = args.subscribers or list(DEFAULT_SUBSCRIBERS)
    server = RedisServer()
    server.start()
    procs: list[subprocess.Popen[bytes]] = []
    client = aioredis.Redis.from_url(server.url)
    try:
        feed, line = _start_child([sys.executable, "-m", "streamex", "marketdata",
                                   "--redis-url", server.url, "--port", "0"], "marketdata")
        procs.append(feed)
        url = line.split("url=")[-1].split()[0]  # the ready line: ... url=ws://HOST:PORT/
        echo, port = _start_child([sys.executable, "-m", "benchmarks.echo_server"],
                                  "echo server")
        procs.append(echo)
        floors = await floor(f"ws://127.0.0.1:{port}/", client)
        print(f"floor: ws echo rtt {_fmt(floors['ws_echo_rtt'])}; "
              f"redis ping rtt {_fmt(floors['redis_ping_rtt'])}", flush=True)
        engine = Engine()
        runs = []
        for n in counts:
            rate = args.rate or min(500.0, MSGS_PER_S_BUDGET / n)
            result = await measure(url, client, engine, n, rate, args.duration, feed.pid)
            runs.append(result)
            print(f"{n:>5} subscribers @ {rate:g} entries/s: {_fmt(result)}  "
                  f"({result['samples']:,} samples, {result['lost']} lost; cpu s feed "
                  f"{result['feed_cpu_s']}, bench {result['bench_cpu_s']} in "
                  f"{result['seconds']} s)", flush=True)
        return {"bench": "feed", "floor": floors, "runs": runs,
                "measured": "XADD of the :out entry -> arrival of its trades message"}
    finally:
        await client.aclose()
        for p in procs:
            p.terminate()
            p.wait(10)
        server.stop()


def _fmt(p: dict[str, Any]) -> str:
    return (f"p50 {p['p50_us']:.0f} us, p99 {p['p99_us']:.0f} us, "
            f"p99.9 {p['p999_us']:.0f} us, max {p['max_us']:.0f} us")


def run(args: argparse.Namespace) -> int:
    import uvloop

    result = uvloop.run(_main(args))
    if args.json:
        print(json.dumps(result))
    return 1 if any(r["lost"] for r in result["runs"]) else 0

"""``streamex bench api``: REST latency of ``GET /api/v3/depth`` and ``POST /api/v3/order``.

Open loop at a fixed rate: request ``i`` is due at ``start + i / rate`` and is
sent then whatever happened to the earlier ones (on a pool of keep-alive
connections, ``--connections``); its latency runs from its due time to the
end of its response, so queueing anywhere (client, server, engine) counts
(no coordinated omission). Percentiles come from ``benchmarks.histogram``.

The floor is measured in the same run, alternating with the service: an
HTTP echo server of the same framework (aiohttp on uvloop, in a process of
its own like the service) answering ``GET /echo`` with a body the size of a
depth answer and ``POST /echo`` with the request's body, through the same
client. Phases run in the order floor GET, depth, floor POST, order,
``--rounds`` times, ``--duration`` seconds each; the load average is
printed before and after.

The service under test is started locally unless ``--url`` names one
(``--api-key``/``--secret`` then sign the orders): Redis (embedded), ``streamex
engine``, ``streamex risk`` and ``streamex api`` as processes, with two bench
accounts and limits too high to throttle the load. The depth is of BTC-USD
(100 levels a side seeded before timing, ``limit=100``); the orders alternate
a sell of one account and a buy of the other at the same price, so each pair
trades and the book stays small; answers are ``newOrderRespType=FULL``
(after the engine's first command on the order) unless ``--resp``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import uvloop
from aiohttp import web

from benchmarks.e2e.schedule import Waker
from benchmarks.histogram import Histogram
from contract.market import DEFAULT_MARKETS
from contract.signing import hmac_hex

SYMBOL = "BTCUSD"
START_TIMEOUT_S = 60.0
LEVELS = 100
Request = tuple[str, str, bytes | None, dict[str, str]]
"""(method, url, body, headers) of one request."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=500.0,
                        help="requests offered per second in each phase (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per phase (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times the four phases are repeated (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=8,
                        help="keep-alive connections of the client (default: %(default)s)")
    parser.add_argument("--resp", choices=("ACK", "RESULT", "FULL"), default="FULL",
                        help="newOrderRespType of the orders (default: %(default)s)")
    parser.add_argument("--url", help="a running streamex api (default: start one locally)")
    parser.add_argument("--api-key", action="append", default=[],
                        help="with --url: the two accounts' keys (give twice)")
    parser.add_argument("--secret", action="append", default=[],
                        help="with --url: the two accounts' secrets (give twice)")


# -- the floor: an aiohttp echo server in a process of its own ---------------------------


def _echo_app(get_body: bytes) -> web.Application:
    async def get(request: web.Request) -> web.Response:
        return web.Response(body=get_body, content_type="application/json")

    async def post(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/echo", get)
    app.router.add_post("/echo", post)
    return app


async def _serve_echo(size: int) -> None:
    runner = web.AppRunner(_echo_app(b"{" + b" " * max(0, size - 2) + b"}"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Future()


@contextlib.contextmanager
def echo_server(size: int) -> Iterator[str]:
    """``python -m benchmarks.api_bench --serve-echo SIZE``; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api_bench", "--serve-echo",
                             str(size)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


# -- the service: a local exchange of processes -------------------------------------------


@dataclass
class LocalApi:
    """Embedded Redis, ``streamex engine``, ``risk`` and ``api`` in ``workdir``."""

    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    url: str = ""
    credentials: tuple[tuple[str, str], ...] = ()

    def start(self) -> LocalApi:
        from contract.settings import Account, Config, LimitsConfig
        from streamex.config import dump_config
        from streamex.redis_server import RedisServer

        funds = {"USD": "1000000000", "BTC": "1000000", "ETH": "1000000"}
        accounts = tuple(Account(f"bench-{n}", f"bench-{n}-key", f"bench-{n}-secret-0123456789",
                                 balances=funds) for n in ("a", "b"))
        big = 10_000_000
        config = Config(markets=DEFAULT_MARKETS, accounts=accounts, limits=LimitsConfig(
            connection_rate=float(big), connection_burst=big, account_rate=float(big),
            account_burst=big, max_backlog=big))
        path = self.workdir / "streamex.toml"
        path.write_text(dump_config(config))
        self.redis = RedisServer(data_dir=self.workdir / "redis", die_with_parent=True)
        self.redis.start()
        log = (self.workdir / "exchange.log").open("ab")
        # The services reach the embedded Redis by its unix socket, as under streamex up.
        common = ["--config", str(path), "--redis-url", self.redis.unix_url or self.redis.url]
        for args in (["engine", "--consumer", "bench-engine"], ["risk", "--consumer",
                                                                 "bench-risk"],
                     ["api", "--port", "0"]):
            self.procs.append(subprocess.Popen([sys.executable, "-m", "streamex", *args,
                                                *common], stdout=log, stderr=log))
        deadline = time.monotonic() + START_TIMEOUT_S
        pattern = re.compile(rb"event=listening service=api url=(http://\S+)/")
        while not (found := pattern.search((self.workdir / "exchange.log").read_bytes())):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError("streamex api did not start; see "
                                   f"{self.workdir / 'exchange.log'}")
            time.sleep(0.05)
        self.url = found.group(1).decode()
        self.credentials = tuple((a.api_key, a.secret) for a in accounts)
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.redis.stop()


# -- requests ---------------------------------------------------------------------------


def signed_order(base: str, key: str, secret: str, params: dict[str, str]) -> Request:
    """A SIGNED ``POST /api/v3/order`` (timestamp now, HMAC of the form body)."""
    body = urlencode({**params, "timestamp": time.time_ns() // 1_000_000})
    body += f"&signature={hmac_hex(secret, body)}"
    return ("POST", f"{base}/api/v3/order", body.encode(),
            {"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"})


def order_maker(base: str, credentials: tuple[tuple[str, str], ...],
                resp: str) -> Callable[[], Request]:
    """Alternately a sell of the first account and a buy of the second, crossing."""
    count = 0

    def make() -> Request:
        nonlocal count
        key, secret = credentials[count % 2]
        side = "SELL" if count % 2 == 0 else "BUY"
        count += 1
        return signed_order(base, key, secret, {
            "symbol": SYMBOL, "side": side, "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.0010", "price": "30000.00", "newOrderRespType": resp})
    return make


@dataclass
class Result:
    name: str
    histogram: Histogram = field(default_factory=Histogram)
    sent: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def run_phase(session: aiohttp.ClientSession, waker: Waker, make: Callable[[], Request],
                    rate: float, duration: float, result: Result) -> None:
    """Offer ``rate`` requests per second for ``duration`` seconds; record each latency."""
    loop = asyncio.get_running_loop()
    clock = time.monotonic_ns
    interval = 1e9 / rate
    n = max(1, int(rate * duration))
    start = clock() + 20_000_000
    histogram = result.histogram
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: int) -> None:
        method, url, body, headers = make()
        try:
            async with session.request(method, url, data=body, headers=headers) as reply:
                await reply.read()
                status = reply.status
        except aiohttp.ClientError:
            status = 0
        histogram.record(clock() - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status != 200:
            result.errors += 1

    for i in range(n):
        due = start + int(i * interval)
        await waker.wait_until(due)
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        result.sent += 1
    while tasks:
        await asyncio.gather(*tasks)


async def _seed(session: aiohttp.ClientSession, base: str,
                credentials: tuple[tuple[str, str], ...]) -> int:
    """Rest LEVELS bids and asks on BTC-USD, away from the orders' price; the depth's size."""
    for i in range(LEVELS):
        for (key, secret), side, price in ((credentials[0], "SELL", 40_000 + i),
                                           (credentials[1], "BUY", 20_000 - i)):
            method, url, body, headers = signed_order(base, key, secret, {
                "symbol": SYMBOL, "side": side, "type": "LIMIT", "timeInForce": "GTC",
                "quantity": "0.0010", "price": f"{price}.00", "newOrderRespType": "ACK"})
            async with session.request(method, url, data=body, headers=headers) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"seeding the book failed: {await reply.text()}")
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{base}/api/v3/depth",
                               params={"symbol": SYMBOL, "limit": str(LEVELS)}) as reply:
            data = await reply.read()
            if data.count(b"],[") + 2 >= 2 * LEVELS or time.monotonic() > deadline:
                return len(data)
        await asyncio.sleep(0.05)


async def _bench(args: argparse.Namespace, base: str,
                 credentials: tuple[tuple[str, str], ...]) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        size = await _seed(session, base, credentials)
        results = {name: Result(name) for name in
                   ("floor GET /echo", "GET /api/v3/depth", "floor POST /echo",
                    "POST /api/v3/order")}
        sample_order = signed_order(base, *credentials[0], {"symbol": SYMBOL})[2] or b""
        with echo_server(size) as echo:
            get_echo: Request = ("GET", f"{echo}/echo", None, {})
            depth: Request = ("GET", f"{base}/api/v3/depth?symbol={SYMBOL}&limit={LEVELS}",
                              None, {})
            post_echo: Request = ("POST", f"{echo}/echo", b"x" * (len(sample_order) + 60),
                                  {"Content-Type": "application/x-www-form-urlencoded"})
            phases: list[tuple[str, Callable[[], Request]]] = [
                ("floor GET /echo", lambda: get_echo),
                ("GET /api/v3/depth", lambda: depth),
                ("floor POST /echo", lambda: post_echo),
                ("POST /api/v3/order", order_maker(base, credentials, args.resp)),
            ]
            waker = Waker(asyncio.get_running_loop())
            try:
                # Warm every connection of both servers before timing.
                for _, make in phases:
                    await run_phase(session, waker, make, 200.0, 0.25, Result("warm-up"))
                for _ in range(args.rounds):
                    for name, make in phases:
                        await run_phase(session, waker, make, args.rate, args.duration,
                                        results[name])
            finally:
                waker.close()
        return list(results.values())


def _report(results: list[Result], args: argparse.Namespace, load_before: tuple[float, ...],
            load_after: tuple[float, ...]) -> str:
    lines = [f"streamex bench api: {args.rate:g} requests/s offered, {args.duration:g} s per "
             f"phase, {args.rounds} round(s), {args.connections} connections, orders "
             f"newOrderRespType={args.resp}",
             "load average before " + " ".join(f"{x:.2f}" for x in load_before)
             + ", after " + " ".join(f"{x:.2f}" for x in load_after),
             f"{'':20} {'sent':>7} {'errors':>6} {'p50 us':>9} {'p99 us':>9} "
             f"{'p99.9 us':>9} {'max us':>9}"]
    for r in results:
        h = r.histogram
        p50, p99, p999 = (h.value_at_percentile(p) / 1000 for p in (50, 99, 99.9))
        lines.append(f"{r.name:20} {r.sent:>7} {r.errors:>6} {p50:>9.0f} {p99:>9.0f} "
                     f"{p999:>9.0f} {h.max / 1000:>9.0f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; 1 when a phase had errors."""
    local: LocalApi | None = None
    workdir = None
    try:
        if args.url:
            if len(args.api_key) != 2 or len(args.secret) != 2:
                print("streamex bench api: --url needs --api-key and --secret twice each",
                      file=sys.stderr)
                return 2
            base = args.url.rstrip("/")
            credentials = tuple(zip(args.api_key, args.secret, strict=True))
        else:
            workdir = tempfile.TemporaryDirectory(prefix="streamex-bench-api-")
            local = LocalApi(Path(workdir.name)).start()
            base, credentials = local.url, local.credentials
        load_before = os.getloadavg()
        results = uvloop.run(_bench(args, base, credentials))
        print(_report(results, args, load_before, os.getloadavg()), flush=True)
        return 1 if any(r.errors for r in results) else 0
    finally:
        if local is not None:
            local.stop()
        if workdir is not None:
            workdir.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.api_bench [options]`` (what ``streamex bench api`` runs)."""
    parser = argparse.ArgumentParser(prog="streamex bench api", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo is not None:
        uvloop.run(_serve_echo(args.serve_echo))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())


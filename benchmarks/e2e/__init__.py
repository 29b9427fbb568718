"""``streamex bench e2e``: end-to-end order latency under open-loop load.

Offers a fixed rate of orders to the gateway over raw websocket connections
(logged on, split over two accounts so trades happen between accounts) and
times, per order, request -> ``received`` reply, request -> ``new`` execution
report, request -> the taker's first ``trade`` report (marketable orders) and
request -> the public ``trades`` push of that trade from the market-data
service.

Open loop: request ``i`` is due at ``t0 + i / rate`` and every latency is
measured from that scheduled time, so a stall anywhere (exchange or load
generator) is counted, not hidden (no coordinated omission). The sender
sleeps on a Linux ``timerfd`` (microsecond precision; the event loop's own
timers have 1 ms resolution) and sends frames encoded before the run over
picows connections (:mod:`streamex.bench_ws`): up to ``SPIN_MAX_RATE`` it
wakes ``SPIN_NS`` early and spins the event loop to the due time, above it
it wakes on a ``SEND_TICK_NS`` grid and sends everything due. The flow is
:func:`streamex.flow.realistic_flow` per market, generated before timing;
its synthetic order ids are mapped to the real ones from the ``received``
replies (a cancel or amend sent before that reply names the order by
``client_order_id``).

The floor is measured in the same run, on the idle exchange just before the
load: a websocket echo round trip (the load's own client, see
:mod:`streamex.bench_ws`, against an echo server of the gateway's library in
this process) and a Redis ``PING`` round trip with redis-py's asyncio client
(the exchange's own client library, without a socket timeout, its fastest
configuration; a raw-socket ``PING`` is reported too), over the URL the
exchange's services use (the embedded server's unix socket under ``streamex
up``).
``floor = ws + 2 x redis`` at each percentile.

Latencies go into :class:`streamex.hdr.Histogram` (log-linear, 3 significant
digits, exact max). Without ``--url`` the benchmark starts its own exchange
(``python -m streamex up`` on free ports with two bench accounts) and stops it
with SIGTERM at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import importlib
import json
import os
import queue
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
import uvloop
from redis.connection import parse_url
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks.histogram import Histogram
from benchmarks.ws_client import BenchConnection, open_connection
from contract.commands import Amend, Cancel, Place
from contract.market import DEFAULT_MARKETS, Market
from streamex.redis_server import free_port

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99, 100.0)
PCT_NAMES = ("p50", "p90", "p99", "p999", "p9999", "max")
PCT_LABELS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")
SWEEP_RATES = (1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000,
               75_000, 100_000)
SPIN_NS = 75_000
"""The sender stops sleeping this long before each due time ..."""
SPIN_MAX_RATE = 2_000
"""... at offered rates up to this (above it, sends are too close to sleep between)."""
SEND_TICK_NS = 100_000
"""Above SPIN_MAX_RATE the sender wakes on a 100 us grid and sends everything due by then
(one timer wake-up per tick, not per order; each send waits at most one tick)."""
KNEE_ACHIEVED = 0.90
KNEE_P99_NS = 1_000_000_000
METRICS = (
    ("received", "request -> received"),
    ("new", "request -> new"),
    ("trade", "request -> taker trade"),
    ("public_trade", "request -> public trade"),
)
#: Kinds of request in a plan.
PASSIVE, MARKETABLE, CANCEL, AMEND = 0, 1, 2, 3
#: Error replies the realistic flow provokes by design (it cancels orders already gone).
EXPECTED_ERRORS = {CANCEL: {"UNKNOWN_ORDER"}, AMEND: {"UNKNOWN_ORDER", "INVALID_QTY"}}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
BENCH_LIMIT = 10_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=1000.0, help="offered orders/s")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of measured load (per step with --sweep)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before measuring (same rate, not recorded)")
    parser.add_argument("--connections", type=int, default=2,
                        help="order-entry connections, alternately logged on to each account")
    parser.add_argument("--markets", type=int, default=1, help="markets to trade")
    parser.add_argument("--url", help="gateway websocket URL (default: start an exchange)")
    parser.add_argument("--md-url", help="market-data websocket URL (with --url)")
    parser.add_argument("--api-key", action="append", default=[],
                        help="account API key (with --url; repeat for a second account)")
    parser.add_argument("--secret", action="append", default=[],
                        help="account secret, one per --api-key")
    parser.add_argument("--redis-url", help="the exchange's Redis, for the floor (with --url)")
    parser.add_argument("--seed", type=int, default=1, help="order-flow seed")
    parser.add_argument("--floor-samples", type=int, default=2000,
                        help="round trips timed for each part of the floor")
    parser.add_argument("--sweep", action="store_true",
                        help="raise the rate step by step up to the saturation knee")
    parser.add_argument("--max-rate", type=float, default=float(SWEEP_RATES[-1]),
                        help="highest rate a sweep tries")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG of the results (matplotlib)")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")


# -- the exchange under test ---------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the exchange listens and how to log on."""

    url: str
    md_url: str
    credentials: tuple[tuple[str, str], ...]  # (api_key, secret) per account
    redis_url: str | None
    pid: int | None = None  # root of the exchange's process tree, when known


def bench_markets(n: int) -> tuple[Market, ...]:
    """``n`` markets: the default ones, then made-up ones with BTC-USD's specification."""
    extra = tuple(Market(f"X{k}-USD", f"X{k}", "USD", "0.01", "0.0001", "0.0001", "1000",
                         "0.01", "1000000") for k in range(max(0, n - len(DEFAULT_MARKETS))))
    return (DEFAULT_MARKETS + extra)[:n]


class LocalExchange:
    """``python -m streamex up`` on free loopback ports with two bench accounts.

    :meth:`start` returns once the banner says the services listen (their
    output goes to ``workdir/exchange.log``); :meth:`stop` sends SIGTERM and
    waits for the orderly shutdown (engines snapshot), killing after 30 s.
    """

    def __init__(self, markets: int, workdir: Path) -> None:
        self.markets = bench_markets(markets)
        self.workdir = workdir
        self.log_path = workdir / "exchange.log"
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self) -> Endpoints:
        from contract.settings import Account, Config, GatewayConfig, LimitsConfig, MarketDataConfig
        from streamex.config import dump_config

        accounts = tuple(Account(f"bench{i}", f"bench{i}-{secrets.token_hex(8)}",
                                 secrets.token_hex(24)) for i in (1, 2))
        gw_port, md_port = free_port(), free_port()
        config = Config(
            markets=self.markets, accounts=accounts,
            gateway=GatewayConfig("127.0.0.1", gw_port),
            marketdata=MarketDataConfig("127.0.0.1", md_port),
            limits=LimitsConfig(connection_rate=float(BENCH_LIMIT), connection_burst=BENCH_LIMIT,
                                account_rate=float(BENCH_LIMIT), account_burst=BENCH_LIMIT,
                                max_backlog=BENCH_LIMIT),
        )
        config_path = self.workdir / "bench.toml"
        config_path.write_text(dump_config(config))
        config_path.chmod(0o600)
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamex", "up", "--config", str(config_path),
             "--gateway-port", str(gw_port), "--marketdata-port", str(md_port)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
        )
        log.close()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        banner = self._banner()
        if "streamex is up" not in (line.strip() for line in banner):
            self.stop()
            raise RuntimeError("the exchange did not start:\n" + "\n".join(banner)
                               + self.log_tail())
        match = next((m for m in (re.match(r"\s*redis\s+((?:redis|unix)://\S+)", line)
                                  for line in banner) if m), None)
        return Endpoints(f"ws://127.0.0.1:{gw_port}/", f"ws://127.0.0.1:{md_port}/",
                         tuple((a.api_key, a.secret) for a in accounts),
                         match.group(1) if match else None, self.proc.pid)

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _banner(self) -> list[str]:
        """stdout lines up to "Press Ctrl-C" (the services print theirs first), or what came
        before exit or time-out."""
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        return lines

    def log_tail(self, n: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n--- exchange log (last lines) ---\n" + "\n".join(tail) if tail else ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to 30 s, then SIGKILL; the exit code of ``streamex up``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


# -- the plan: every request encoded before the run ----------------------------


@dataclass
class Plan:
    """The requests of one run, in send order; request ``i`` has JSON id ``i``.

    ``frames[i]`` is the encoded request (cancels and amends name their order
    by ``client_order_id`` there); ``by_id[i]`` is the (prefix, suffix) around
    the real order id, used once the target's ``received`` reply has told it.
    """

    tag: str
    symbols: list[str]
    frames: list[bytes]
    kind: bytearray
    conn: array[int]
    target: array[int]
    by_id: list[tuple[bytes, bytes] | None]
    places: int

    def __len__(self) -> int:
        return len(self.frames)


def _encode(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def build_plan(markets: Sequence[Market], n: int, connections: int, accounts: int,
               seed: int) -> Plan:
    """``n`` requests interleaving ``realistic_flow`` of each market. O(n) (+ flow generation)."""
    from benchmarks.flow import realistic_flow

    tag = "e" + secrets.token_hex(3) + "-"
    per_market = [realistic_flow(m, n // len(markets) + 1, seed + k,
                                 start_ms=1_700_000_000_000 + k * 10**9)
                  for k, m in enumerate(markets)]
    conns_of = [[c for c in range(connections) if c % accounts == a] for a in range(accounts)]
    next_conn = [0] * accounts
    frames: list[bytes] = []
    kind = bytearray(n)
    conn = array("i", [0]) * n
    target = array("i", [-1]) * n
    by_id: list[tuple[bytes, bytes] | None] = [None] * n
    slot_of: dict[str, int] = {}
    places = 0
    for i in range(n):
        k = i % len(markets)
        market = markets[k]
        symbol = market.symbol
        synthetic_id, cmd = per_market[k][i // len(markets)]
        account = int(cmd.account.removeprefix("acct")) % accounts
        params: dict[str, Any]
        if isinstance(cmd, Place):
            options = conns_of[account]
            conn[i] = options[next_conn[account] % len(options)]
            next_conn[account] += 1
            slot_of[f"{k}:{synthetic_id}"] = i
            places += 1
            params = {"symbol": symbol, "side": cmd.side, "type": cmd.type,
                      "qty": market.format_qty(cmd.qty)}
            if cmd.type == "limit":
                params["price"] = market.format_price(cmd.price)
                if cmd.tif != "GTC":
                    params["tif"] = cmd.tif
            params["stp"] = cmd.stp
            params["client_order_id"] = f"{tag}{i}"
            kind[i] = PASSIVE if cmd.type == "limit" and cmd.tif == "GTC" else MARKETABLE
            frames.append(_encode({"id": i, "method": "order.place", "params": params}))
            continue
        assert isinstance(cmd, Cancel | Amend), cmd
        slot = slot_of[f"{k}:{cmd.order_id}"]
        target[i] = slot
        conn[i] = conn[slot]
        method = "order.cancel" if isinstance(cmd, Cancel) else "order.amend"
        kind[i] = CANCEL if isinstance(cmd, Cancel) else AMEND
        extra: dict[str, str] = {}
        if isinstance(cmd, Amend):
            if cmd.qty is not None:
                extra["qty"] = market.format_qty(cmd.qty)
            if cmd.price is not None:
                extra["price"] = market.format_price(cmd.price)
        frames.append(_encode({"id": i, "method": method, "params": {
            "symbol": symbol, "client_order_id": f"{tag}{slot}", **extra}}))
        head = _encode({"id": i, "method": method, "params": {"symbol": symbol, "order_id": ""}})
        tail = _encode(extra)[1:] if extra else b"}"
        # head ends with '"order_id":""}}': cut after the opening quote of the value.
        by_id[i] = (head[:-3], b'"' + (b"," + tail if extra else b"}") + b"}")
    return Plan(tag, [m.symbol for m in markets], frames, kind, conn, target, by_id, places)


def command_counts(plan: Plan) -> dict[str, int]:
    names = ("passive", "marketable", "cancel", "amend")
    counts = Counter(plan.kind)
    return {names[k]: counts.get(k, 0) for k in range(4)}


# -- precise wake-ups ----------------------------------------------------------


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


class Waker:
    """Wait until an absolute ``time.monotonic_ns()`` with microsecond precision.

    Uses a Linux ``timerfd`` (CLOCK_MONOTONIC, absolute) watched by the event
    loop; elsewhere falls back to ``asyncio.sleep`` (1 ms resolution). Close
    with :meth:`close`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None
        self.fd = -1
        self.precise = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            fd = libc.timerfd_create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self.fd = fd
        self.precise = True
        self._spec = _ITimerSpec()
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait_until(self, t_ns: int, spin_ns: int = 0) -> None:
        """Return at ``t_ns``; with ``spin_ns``, sleep until that long before it, then
        run the event loop without sleeping (I/O still handled) until it is time.

        Waking a sleeping process costs ~40 us on a VM; the spin spends CPU
        to send on time instead.
        """
        if spin_ns:
            await self.wait_until(t_ns - spin_ns)
            clock = time.monotonic_ns
            while clock() < t_ns:  # noqa: ASYNC110 - a busy wait is the point
                await asyncio.sleep(0)
            return
        if not self.precise:
            await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))
            return
        spec = self._spec
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(t_ns, 1_000_000_000)
        self._future = self._loop.create_future()
        if self._settime(self.fd, 1, ctypes.byref(spec), None) != 0:  # TFD_TIMER_ABSTIME
            self._future = None
            await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))
            return
        await self._future

    def close(self) -> None:
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.precise = False


# -- incoming frames ------------------------------------------------------------


class _Error(msgspec.Struct):
    code: str = ""
    message: str = ""


class _Exec(msgspec.Struct):
    client_order_id: str | None = None
    symbol: str = ""
    exec_type: str = ""
    liquidity: str | None = None
    trade_id: int | None = None
    reason: str | None = None


class _GatewayFrame(msgspec.Struct):
    id: int | str | None = None
    result: dict[str, Any] | None = None
    error: _Error | None = None
    channel: str | None = None
    data: _Exec | None = None


class _PublicTrade(msgspec.Struct):
    trade_id: int


class _MarketDataFrame(msgspec.Struct):
    id: int | str | None = None
    result: dict[str, Any] | None = None
    error: _Error | None = None
    channel: str | None = None
    symbol: str | None = None
    data: list[_PublicTrade] | None = None


class RequestFailed(RuntimeError):
    """A control request (logon, subscribe, ...) got an error reply."""


# -- one run ----------------------------------------------------------------------


@dataclass
class RunResult:
    """Everything one run measured; :func:`summary` turns it into plain numbers."""

    rate: float
    duration: float
    warmup: float
    connections: int
    symbols: list[str]
    commands: dict[str, int]
    sent: int = 0
    measured: int = 0
    replies: int = 0
    places_received: int = 0
    measured_places: int = 0
    achieved_rate: float = 0.0
    hists: dict[str, Histogram] = field(default_factory=dict)
    floor: dict[str, Histogram] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected_errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    missing_replies: int = 0
    missing_new: int = 0
    unmatched_public: int = 0
    send_lag: Histogram = field(default_factory=Histogram)
    generator_cpu: float = 0.0
    wall_s: float = 0.0
    exchange_cpu: dict[str, float] = field(default_factory=dict)
    precise_timer: bool = True
    load_average: float | None = None
    aborted: str | None = None


class LoadRun:
    """One open-loop run: connect and log on, floor, load, drain, collect."""

    def __init__(self, endpoints: Endpoints, plan: Plan, rate: float, duration: float,
                 warmup: float, connections: int, floor_samples: int,
                 progress: bool) -> None:
        self.ep = endpoints
        self.plan = plan
        self.n = len(plan)
        self.warm = min(self.n, int(round(rate * warmup)))
        self.period = 1e9 / rate
        self.connections = connections
        self.floor_samples = floor_samples
        self.progress = progress
        self.result = RunResult(rate, duration, warmup, connections, plan.symbols,
                                command_counts(plan))
        self.result.hists = {name: Histogram() for name, _ in METRICS}
        self.t0 = 0
        self.sent = 0
        self.replied = bytearray(self.n)
        self.got_new = bytearray(self.n)
        self.got_trade = bytearray(self.n)
        self.real_ids: list[str | None] = [None] * self.n
        self.first_trade: dict[tuple[str, int], int] = {}
        self.public: dict[tuple[str, int], int] = {}
        self.new_done = 0
        self.last_reply = 0
        self.control: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.control_seq = 0
        self.decode_errors = 0
        self._md_decode = msgspec.json.Decoder(_MarketDataFrame).decode
        self.conns: list[tuple[str, BenchConnection]] = []  # (what, connection)

    # -- connections

    @property
    def closed(self) -> str | None:
        """Why a connection of the run ended, if one did."""
        return next((f"{what} connection: {conn.closed}" for what, conn in self.conns
                     if conn.closed is not None), None)

    async def _connect(self, what: str, url: str, on_frame: Any) -> BenchConnection:
        conn = await open_connection(url, on_frame)
        self.conns.append((what, conn))
        return conn

    async def _control(self, ws: BenchConnection, method: str,
                       params: dict[str, Any] | None = None,
                       wait_s: float = 10.0) -> dict[str, Any]:
        self.control_seq += 1
        rid = f"c{self.control_seq}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.control[rid] = future
        request: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            request["params"] = params
        ws.send(_encode(request))
        try:
            return await asyncio.wait_for(future, wait_s)
        finally:
            self.control.pop(rid, None)

    def _control_reply(self, rid: str, result: dict[str, Any] | None,
                       error: _Error | None) -> None:
        future = self.control.get(rid)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(RequestFailed(f"{error.code}: {error.message}"))
        else:
            future.set_result(result or {})

    async def _logon(self, ws: BenchConnection, api_key: str, secret: str) -> None:
        ts = int(time.time() * 1000)
        signature = hmac.new(secret.encode(), f"{ts}{api_key}".encode(),
                             hashlib.sha256).hexdigest()
        await self._control(ws, "logon", {"api_key": api_key, "timestamp": ts,
                                          "signature": signature})

    # -- reading

    def _gateway_reader(self, count_outcomes: bool) -> Any:
        """The frame handler of a gateway connection: replies and execution reports;
        ``count_outcomes`` on one connection per account (reports go to every
        connection of the account)."""
        decode = msgspec.json.Decoder(_GatewayFrame).decode
        on_reply, on_exec = self._on_reply, self._on_exec

        def on_frame(raw: bytes, now: int) -> None:
            try:
                msg = decode(raw)
            except msgspec.DecodeError:
                self.decode_errors += 1
                return
            rid = msg.id
            if type(rid) is int:
                on_reply(rid, msg, now)
            elif msg.data is not None:
                on_exec(msg.data, now, count_outcomes)
            elif isinstance(rid, str):
                self._control_reply(rid, msg.result, msg.error)
            elif msg.error is not None:
                self.result.errors[msg.error.code] += 1
                self.result.unexpected_errors += 1

        return on_frame

    def _on_reply(self, i: int, msg: _GatewayFrame, now: int) -> None:
        if not 0 <= i < self.n or self.replied[i]:
            return
        self.replied[i] = 1
        r = self.result
        r.replies += 1
        self.last_reply = now
        kind = self.plan.kind[i]
        if msg.error is not None:
            code = msg.error.code
            r.errors[code] += 1
            if code not in EXPECTED_ERRORS.get(kind, ()):
                r.unexpected_errors += 1
            return
        if i >= self.warm:
            r.hists["received"].record(now - self.t0 - int(i * self.period))
        if kind <= MARKETABLE:
            r.places_received += 1
            if i >= self.warm:
                r.measured_places += 1
            if msg.result is not None:
                self.real_ids[i] = msg.result.get("order_id")

    def _on_exec(self, d: _Exec, now: int, count_outcomes: bool) -> None:
        cid = d.client_order_id
        tag = self.plan.tag
        exec_type = d.exec_type
        if count_outcomes and exec_type in ("rejected", "cancel_rejected", "expired") \
                and d.reason:
            self.result.outcomes[f"{exec_type} {d.reason}"] += 1
        if cid is None or not cid.startswith(tag):
            return
        try:
            i = int(cid[len(tag):])
        except ValueError:
            return
        if not 0 <= i < self.n:
            return
        if exec_type == "new" or exec_type == "rejected":
            if not self.got_new[i]:
                self.got_new[i] = 1
                self.new_done += 1
                if i >= self.warm:
                    self.result.hists["new"].record(now - self.t0 - int(i * self.period))
        elif (exec_type == "trade" and d.liquidity == "taker" and not self.got_trade[i]
              and self.plan.kind[i] == MARKETABLE and d.trade_id is not None):
            self.got_trade[i] = 1
            if i >= self.warm:
                self.result.hists["trade"].record(now - self.t0 - int(i * self.period))
                self.first_trade[(d.symbol, d.trade_id)] = i

    def _marketdata_frame(self, raw: bytes, now: int) -> None:
        try:
            msg = self._md_decode(raw)
        except msgspec.DecodeError:
            return  # heartbeats and other channels have other shapes
        if msg.channel == "trades" and msg.data and msg.symbol:
            for t in msg.data:
                self.public.setdefault((msg.symbol, t.trade_id), now)
        elif isinstance(msg.id, str):
            self._control_reply(msg.id, msg.result, msg.error)

    # -- floor

    async def _floor(self) -> None:
        samples = self.floor_samples
        frame = self.plan.frames[0]
        ws_hist = Histogram()

        async def echo(conn: ServerConnection) -> None:
            async for message in conn:
                await conn.send(message)

        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()

        def echoed(_: bytes, now: int) -> None:
            if not waiter.done():
                waiter.set_result(now)

        # The load's own client against a server of the gateway's library; both
        # timestamps are taken like the load's (arrival of the frame).
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            conn = await open_connection(f"ws://127.0.0.1:{port}/", echoed)
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
        self.result.floor["ws"] = ws_hist
        if self.ep.redis_url is None:
            return
        # No socket_timeout: redis-py then skips an asyncio.timeout per read (its fastest path).
        client = aioredis.Redis.from_url(self.ep.redis_url, socket_timeout=None)
        hist = Histogram()
        try:
            for k in range(samples + samples // 10):
                t = time.monotonic_ns()
                await client.ping()
                if k >= samples // 10:
                    hist.record(time.monotonic_ns() - t)
        finally:
            await client.aclose()
        self.result.floor["redis"] = hist
        raw_hist = await _raw_ping(self.ep.redis_url, samples)
        if raw_hist is not None:
            self.result.floor["redis_raw"] = raw_hist

    # -- the run

    async def run(self) -> RunResult:
        r = self.result
        creds = self.ep.credentials
        conns: list[BenchConnection] = []
        waker = Waker(asyncio.get_running_loop())
        r.precise_timer = waker.precise
        try:
            for c in range(self.connections):
                ws = await self._connect("gateway", self.ep.url,
                                         self._gateway_reader(c < len(creds)))
                conns.append(ws)
                api_key, secret = creds[c % len(creds)]
                await self._logon(ws, api_key, secret)
            md = await self._connect("market-data", self.ep.md_url, self._marketdata_frame)
            for symbol in self.plan.symbols:
                await self._control(md, "subscribe", {"channel": "trades", "symbol": symbol})
            with contextlib.suppress(OSError):
                r.load_average = os.getloadavg()[0]
            await self._floor()
            cpu0 = _cpu_seconds()
            tree0 = _tree_ticks(self.ep.pid)
            wall0 = time.monotonic()
            progress = (asyncio.create_task(self._progress()) if self.progress else None)
            try:
                await self._send(conns, waker)
                await self._drain()
            finally:
                r.wall_s = time.monotonic() - wall0
                r.generator_cpu = (_cpu_seconds() - cpu0) / r.wall_s
                r.exchange_cpu = _tree_cpu(tree0, _tree_ticks(self.ep.pid), r.wall_s)
                if progress is not None:
                    progress.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await progress
                    print(file=sys.stderr)
            await self._cleanup(conns)
        except (OSError, RequestFailed, TimeoutError) as exc:
            r.aborted = f"{type(exc).__name__}: {exc}"
        finally:
            waker.close()
            lost = self.closed  # before the client closes them
            for _, conn in self.conns:
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(conn.close(), 5)
        self._collect(lost)
        return r

    async def _send(self, conns: list[BenchConnection], waker: Waker) -> None:
        plan = self.plan
        frames, conn_of, kind, target, by_id = (plan.frames, plan.conn, plan.kind, plan.target,
                                                plan.by_id)
        real_ids = self.real_ids
        period = self.period
        n, warm = self.n, self.warm
        clock = time.monotonic_ns
        lag = self.result.send_lag
        spin = SPIN_NS if self.result.rate <= SPIN_MAX_RATE else 0
        tick = 1 if spin else SEND_TICK_NS
        sends = [ws.send for ws in conns]
        self.t0 = t0 = clock() + 5_000_000
        i = 0
        burst = 0
        while i < n:
            due = t0 + int(i * period)
            now = clock()
            if now < due:
                # A send on a closed connection raises; this catches the market-data one.
                if self.closed:
                    raise ConnectionError(self.closed)
                await waker.wait_until(-(-due // tick) * tick, spin)
                burst = 0
                continue
            if burst >= 32:  # behind schedule: let the replies in between sends
                await asyncio.sleep(0)
                burst = 0
            burst += 1
            frame = frames[i]
            if kind[i] >= CANCEL:
                real = real_ids[target[i]]
                parts = by_id[i]
                if real is not None and parts is not None:
                    frame = parts[0] + real.encode() + parts[1]
            if i >= warm:
                lag.record(now - due)
            sends[conn_of[i]](frame)
            i += 1
            self.sent = i

    async def _drain(self) -> None:
        """Wait for every reply and every place's first report, then for public trades."""
        r = self.result
        deadline = time.monotonic() + max(10.0, r.duration)
        while time.monotonic() < deadline and not self.closed:
            if r.replies >= self.n and self.new_done >= r.places_received:
                break
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not self.closed:
            if all(key in self.public for key in self.first_trade):
                break
            await asyncio.sleep(0.01)

    async def _cleanup(self, conns: list[BenchConnection]) -> None:
        """Cancel what the run left open, one ``order.cancel_all`` per account and market."""
        per_account = {c % len(self.ep.credentials): ws for c, ws in enumerate(conns)}
        for ws in per_account.values():
            for symbol in self.plan.symbols:
                with contextlib.suppress(RequestFailed, TimeoutError):
                    await self._control(ws, "order.cancel_all", {"symbol": symbol})

    async def _progress(self) -> None:
        width = 30
        while True:
            await asyncio.sleep(0.25)
            done = self.sent / self.n if self.n else 1.0
            bar = "#" * int(done * width)
            print(f"\r  {self.result.rate:,.0f}/s [{bar:<{width}}] {done:4.0%} "
                  f"sent {self.sent:,}/{self.n:,} replies {self.result.replies:,}",
                  end="", file=sys.stderr, flush=True)

    def _collect(self, lost: str | None) -> None:
        r = self.result
        r.sent = self.sent
        r.measured = max(0, self.n - self.warm)
        r.missing_replies = self.sent - r.replies
        r.missing_new = r.places_received - self.new_done
        hist = r.hists["public_trade"]
        for key, i in self.first_trade.items():
            seen = self.public.get(key)
            if seen is None:
                r.unmatched_public += 1
            else:
                hist.record(seen - self.t0 - int(i * self.period))
        if self.last_reply and r.measured and r.aborted is None:
            span = self.last_reply - (self.t0 + int(self.warm * self.period)) + self.period
            measured_replies = r.replies - (self.warm - self.replied[: self.warm].count(0))
            r.achieved_rate = measured_replies / (span / 1e9)
        if lost is not None and r.aborted is None:
            r.aborted = lost


async def _raw_ping(url: str, samples: int) -> Histogram | None:
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


# -- CPU accounting ------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if "-m" in argv and "streamex" in argv:
        rest = argv[argv.index("streamex") + 1:]
        role = rest[0] if rest else "streamex"
        if role == "up":
            return "streamex up"
        if role == "engine" and "--markets" in rest:
            return f"engine {rest[rest.index('--markets') + 1]}"
        return role
    return Path(argv[0].split(" ")[0]).name or str(pid)  # redis-server retitles itself


def _tree_ticks(root: int | None) -> dict[int, tuple[str, int]]:
    """{pid: (name, cpu ticks)} of ``root`` and its descendants (Linux /proc)."""
    if root is None or not os.path.isdir("/proc"):
        return {}
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                parent[int(entry)], ticks[int(entry)] = stat
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: (_proc_name(pid), ticks[pid]) for pid in tree if pid in ticks}


def _tree_cpu(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
              wall_s: float) -> dict[str, float]:
    """CPU use of each process over the window, as a fraction of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        used = (ticks - before.get(pid, (name, 0))[1]) / hz / wall_s
        out[name] = out.get(name, 0.0) + used
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# -- reporting ------------------------------------------------------------------------


def _us(ns: int) -> float:
    return round(ns / 1000.0, 1)


def _pcts(hist: Histogram) -> dict[str, float]:
    return {name: _us(v) for name, v in zip(PCT_NAMES, hist.percentiles(PERCENTILES),
                                             strict=True)}


def floor_percentiles(floor: dict[str, Histogram]) -> dict[str, float]:
    """ws + 2 x redis at each percentile (ws alone when Redis was not reachable), in µs."""
    ws = _pcts(floor["ws"]) if "ws" in floor else dict.fromkeys(PCT_NAMES, 0.0)
    rd = _pcts(floor["redis"]) if "redis" in floor else dict.fromkeys(PCT_NAMES, 0.0)
    return {k: round(ws[k] + 2 * rd[k], 1) for k in PCT_NAMES}


def summary(r: RunResult) -> dict[str, Any]:
    """The run as a JSON-ready dict; top-level latency fields are request -> new."""
    metrics = {name: {**_pcts(r.hists[name]), "count": r.hists[name].total}
               for name, _ in METRICS}
    floor = floor_percentiles(r.floor)
    new = metrics["new"]
    ratios = {k: (round(new[k] / floor[k], 2) if floor[k] else None) for k in PCT_NAMES}
    return {
        "rate": r.rate,
        "achieved_rate": round(r.achieved_rate, 1),
        "duration_s": r.duration,
        "warmup_s": r.warmup,
        "connections": r.connections,
        "markets": r.symbols,
        "commands": r.commands,
        "sent": r.sent,
        "replies": r.replies,
        "places_received": r.places_received,
        "measured_places": r.measured_places,
        "missing_replies": r.missing_replies,
        "missing_new": r.missing_new,
        **{f"{k}_us": new[k] for k in PCT_NAMES},
        "floor_us": floor["p50"],
        "p50_ratio": ratios["p50"],
        "p99_ratio": ratios["p99"],
        "ratios": ratios,
        "metrics": metrics,
        "floor": {"total": floor,
                  **{name: _pcts(h) for name, h in r.floor.items()}},
        "errors": dict(r.errors),
        "unexpected_errors": r.unexpected_errors,
        "outcomes": dict(r.outcomes),
        "unmatched_public_trades": r.unmatched_public,
        "send_lag_us": _pcts(r.send_lag),
        "precise_timer": r.precise_timer,
        "cpus": os.cpu_count(),
        "load_average": r.load_average,
        "generator_cpu": round(r.generator_cpu, 3),
        "exchange_cpu": {k: round(v, 3) for k, v in r.exchange_cpu.items()},
        "aborted": r.aborted,
    }


def render(s: dict[str, Any]) -> str:
    """A human-readable report of one :func:`summary`."""
    lines = [
        f"offered {s['rate']:,.0f} orders/s for {s['duration_s']:g} s "
        f"(+{s['warmup_s']:g} s warm-up) over {s['connections']} connections, "
        f"markets {', '.join(s['markets'])}",
        "  flow: " + ", ".join(f"{v:,} {k}" for k, v in s["commands"].items()),
        f"  sent {s['sent']:,}, replies {s['replies']:,}, achieved "
        f"{s['achieved_rate']:,.0f} orders/s ({s['achieved_rate'] / s['rate']:.1%} of offered)",
    ]
    if s["aborted"]:
        lines.append(f"  ABORTED: {s['aborted']}")
    head = f"  {'latency, µs (from scheduled send)':<36}" + "".join(
        f"{label:>10}" for label in PCT_LABELS) + f"{'count':>9}"
    lines.append(head)
    for name, label in METRICS:
        m = s["metrics"][name]
        lines.append(f"  {label:<36}" + "".join(f"{m[k]:>10,.0f}" for k in PCT_NAMES)
                     + f"{m['count']:>9,}")
    floor_rows = (("ws", "floor: websocket echo round trip"),
                  ("redis", "floor: redis PING (redis-py asyncio)"),
                  ("redis_raw", "       redis PING (raw socket)"),
                  ("total", "floor = ws + 2 x redis"))
    for key, label in floor_rows:
        if key in s["floor"]:
            f = s["floor"][key]
            lines.append(f"  {label:<36}" + "".join(f"{f[k]:>10,.0f}" for k in PCT_NAMES))
    ratios = s["ratios"]
    lines.append(f"  {'request -> new / floor':<36}" + "".join(
        f"{(f'{ratios[k]:.1f}x') if ratios[k] is not None else '-':>10}" for k in PCT_NAMES))
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(s["errors"].items())) or "none"
    lines.append(f"  error replies: {errors} (unexpected: {s['unexpected_errors']})")
    if s["outcomes"]:
        lines.append("  outcomes: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(s["outcomes"].items())))
    if s["missing_replies"] or s["missing_new"] or s["unmatched_public_trades"]:
        lines.append(f"  MISSING: replies {s['missing_replies']:,}, new reports "
                     f"{s['missing_new']:,}, public trades {s['unmatched_public_trades']:,}")
    lag = s["send_lag_us"]
    lines.append(f"  load generator: CPU {s['generator_cpu']:.0%} of one core; send lag "
                 f"p50 {lag['p50']:,.0f} µs, p99 {lag['p99']:,.0f} µs, max {lag['max']:,.0f} µs"
                 + ("" if s["precise_timer"] else " (no timerfd: 1 ms timer resolution)"))
    if s["load_average"] is not None:
        lines.append(f"  machine: {s['cpus']} CPUs, 1-minute load average {s['load_average']:.1f} "
                     "before the run (anything else running skews the numbers)")
    if s["exchange_cpu"]:
        lines.append("  exchange CPU (fraction of one core): " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["exchange_cpu"].items()))
    return "\n".join(lines)


def render_sweep(steps: list[dict[str, Any]]) -> str:
    lines = ["sweep (request -> new, µs):",
             f"  {'offered':>9} {'achieved':>9} {'p50':>10} {'p99':>10} {'p99.9':>10} "
             f"{'max':>10} {'gen CPU':>8}"]
    for s in steps:
        lines.append(f"  {s['rate']:>9,.0f} {s['achieved_rate']:>9,.0f} {s['p50_us']:>10,.0f} "
                     f"{s['p99_us']:>10,.0f} {s['p999_us']:>10,.0f} {s['max_us']:>10,.0f} "
                     f"{s['generator_cpu']:>8.0%}" + ("  aborted" if s["aborted"] else ""))
    return "\n".join(lines)


def saturated(s: dict[str, Any]) -> bool:
    """The knee: achieved below 90% of offered, p99 over 1 s, or the run failed."""
    return bool(s["aborted"] or s["achieved_rate"] < KNEE_ACHIEVED * s["rate"]
                or s["p99_us"] * 1000 > KNEE_P99_NS)


def write_plot(path: str, results: list[RunResult], steps: list[dict[str, Any]]) -> None:
    """PNG: percentile spectrum of the (last) run with its floor, and the sweep if any."""
    matplotlib: Any = importlib.import_module("matplotlib")  # optional: the bench extra
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    last = results[-1]
    ncols = 2 if len(steps) > 1 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 5), squeeze=False)
    ax = axes[0][0]
    for name, label in METRICS:
        points = last.hists[name].spectrum()
        if points:
            xs = [1.0 / (1.0 - p / 100.0) if p < 100 else None for p, _ in points]
            pairs = [(x, v / 1000) for x, (_, v) in zip(xs, points, strict=True) if x]
            ax.plot([x for x, _ in pairs], [v for _, v in pairs], label=label)
    if "ws" in last.floor:
        ws, rd = last.floor["ws"], last.floor.get("redis")
        pts = ws.spectrum()
        ys = [(v + (2 * rd.value_at_percentile(p) if rd else 0)) / 1000 for p, v in pts]
        xs2 = [1.0 / (1.0 - p / 100.0) if p < 100 else 0.0 for p, _ in pts]
        ax.plot([x for x in xs2 if x], [y for x, y in zip(xs2, ys, strict=True) if x],
                "k--", label="floor (ws + 2 x redis)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(f"latency spectrum at {last.rate:,.0f} orders/s offered")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if ncols == 2:
        ax2 = axes[0][1]
        done = [s for s in steps if not s["aborted"]]  # an aborted step has no latencies
        xs = [s["achieved_rate"] for s in done]
        for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"),
                           ("max_us", "max")):
            ax2.plot(xs, [s[key] for s in done], marker="o", label=label)
        ax2.set_yscale("log")
        ax2.set_xlabel("achieved orders/s")
        ax2.set_ylabel("request -> new latency (µs)")
        ax2.set_title("latency vs throughput (sweep)")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- entry point ------------------------------------------------------------------------


async def _markets_of(endpoints: Endpoints, count: int) -> tuple[Market, ...]:
    """The first ``count`` markets the gateway lists (``markets`` method)."""
    async with connect(endpoints.url, compression=None, open_timeout=10) as ws:
        await ws.send(_encode({"id": "m", "method": "markets"}), text=True)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if "result" not in reply:
        raise RequestFailed(f"markets: {reply.get('error')}")
    listed = [Market(**m) for m in reply["result"]["markets"]]
    return tuple(listed[:count])


def _one_run(endpoints: Endpoints, markets: Sequence[Market], rate: float,
             args: argparse.Namespace, progress: bool) -> RunResult:
    n = int(round(rate * (args.duration + args.warmup)))
    t = time.monotonic()
    plan = build_plan(markets, n, args.connections, len(endpoints.credentials), args.seed)
    print(f"planned {n:,} requests in {time.monotonic() - t:.1f} s", file=sys.stderr)
    run = LoadRun(endpoints, plan, rate, args.duration, args.warmup, args.connections,
                  args.floor_samples, progress)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run.run())


def _check_args(args: argparse.Namespace) -> str | None:
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        return "--rate and --duration must be positive, --warmup not negative"
    if args.connections < 1 or args.markets < 1:
        return "--connections and --markets must be at least 1"
    if args.url:
        if not args.md_url:
            return "--url needs --md-url"
        if not args.api_key or len(args.api_key) != len(args.secret):
            return "--url needs --api-key and --secret (one --secret per --api-key)"
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            return ("--plot needs matplotlib: pip install 'streamex[bench]' "
                    "(or pip install matplotlib)")
    return None


@contextlib.contextmanager
def _exchange(args: argparse.Namespace) -> Iterator[Endpoints]:
    if args.url:
        yield Endpoints(args.url, args.md_url, tuple(zip(args.api_key, args.secret,
                                                         strict=True)), args.redis_url)
        return
    with tempfile.TemporaryDirectory(prefix="streamex-bench-") as tmp:
        local = LocalExchange(args.markets, Path(tmp))
        endpoints = local.start()
        print(f"started the exchange: {endpoints.url} {endpoints.md_url} "
              f"redis {endpoints.redis_url}", file=sys.stderr)
        try:
            yield endpoints
        finally:
            code = local.stop()
            if code not in (0, None):
                print(f"streamex up exited with code {code}{local.log_tail()}",
                      file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        print(f"streamex bench e2e: {problem}", file=sys.stderr)
        return 2
    progress = sys.stderr.isatty()
    results: list[RunResult] = []
    steps: list[dict[str, Any]] = []
    try:
        with _exchange(args) as endpoints:
            if args.url:
                markets = asyncio.run(_markets_of(endpoints, args.markets))
            else:
                markets = bench_markets(args.markets)
            rates = ([r for r in SWEEP_RATES if r <= args.max_rate] if args.sweep
                     else [args.rate])
            for rate in rates:
                result = _one_run(endpoints, markets, rate, args, progress)
                results.append(result)
                s = summary(result)
                steps.append(s)
                print(render(s), flush=True)
                if args.sweep and saturated(s):
                    break
    except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
        print(f"streamex bench e2e: {exc}", file=sys.stderr)
        return 1
    if not steps:
        return 1
    final = dict(steps[-1])
    if args.sweep:
        print(render_sweep(steps), flush=True)
        sustained = [s for s in steps if not saturated(s)]
        final["knee_rate"] = steps[-1]["rate"] if saturated(steps[-1]) else None
        final["max_sustained_rate"] = sustained[-1]["rate"] if sustained else None
        final["sweep"] = [{k: s[k] for k in ("rate", "achieved_rate", "p50_us", "p90_us",
                                             "p99_us", "p999_us", "max_us", "floor_us",
                                             "p50_ratio", "generator_cpu", "aborted")}
                          for s in steps]
    if args.plot:
        write_plot(args.plot, results, steps)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(final), flush=True)
    return 0 if all(s["aborted"] is None for s in steps) else 1

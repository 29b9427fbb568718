"""One open-loop load run: connect and log on, floor, send on schedule, receive, record.

:class:`LoadRun` sends the plan's frames at their due times over picows
connections (:mod:`benchmarks.ws_client`) and, as frames arrive, records
each latency from the request's scheduled send time into a
:class:`~benchmarks.histogram.Histogram`. The receive path is the hot path
of the load generator: per frame one msgspec decode, a few array lookups and
one ``Histogram.record`` per latency (~0.2 µs); the sender encodes nothing
(cancels and amends only splice in the real order id).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import msgspec

from benchmarks.e2e.floor import measure_floor
from benchmarks.e2e.launch import Endpoints
from benchmarks.e2e.report import METRICS, RunResult, cpu_seconds, tree_cpu, tree_ticks
from benchmarks.e2e.schedule import (
    CANCEL,
    EXPECTED_ERRORS,
    MARKETABLE,
    SEND_TICK_NS,
    SPIN_MAX_RATE,
    SPIN_NS,
    Plan,
    Waker,
    command_counts,
)
from benchmarks.histogram import Histogram
from benchmarks.ws_client import BenchConnection, open_connection
from contract.signing import sign

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


class _Frame(msgspec.Struct):
    """What every frame of the services may carry: a reply (id, result or error), a push."""

    id: int | str | None = None
    result: dict[str, Any] | None = None
    error: _Error | None = None
    channel: str | None = None


class _GatewayFrame(_Frame):
    data: _Exec | None = None


class _PublicTrade(msgspec.Struct):
    trade_id: int


class _MarketDataFrame(_Frame):
    symbol: str | None = None
    data: list[_PublicTrade] | None = None


class RequestFailed(RuntimeError):
    """A control request (logon, subscribe, ...) got an error reply."""


# -- one run ----------------------------------------------------------------------


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
        ws.send(msgspec.json.encode(request))
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
        await self._control(ws, "logon", {"api_key": api_key, "timestamp": ts,
                                          "signature": sign(secret, ts, api_key)})

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
            await measure_floor(r.floor, self.plan.frames[0], self.ep.redis_url,
                                self.floor_samples)
            cpu0 = cpu_seconds()
            tree0 = tree_ticks(self.ep.pid)
            wall0 = time.monotonic()
            progress = (asyncio.create_task(self._progress()) if self.progress else None)
            try:
                await self._send(conns, waker)
                await self._drain()
            finally:
                r.wall_s = time.monotonic() - wall0
                r.generator_cpu = (cpu_seconds() - cpu0) / r.wall_s
                r.exchange_cpu = tree_cpu(tree0, tree_ticks(self.ep.pid), r.wall_s)
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

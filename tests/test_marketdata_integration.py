"""The market-data service end to end: real Redis, real engine and feed processes, sockets.

Commands are XADDed to ``sx:{BTC-USD}:in`` (as the gateway would), the engine
process matches them, ``streamex marketdata`` processes serve them; websocket
clients written from PROTOCOL.md check every message against an in-process
OrderBook fed the same commands.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from marketdata_helpers import (
    REPO,
    BookMirror,
    EngineProcess,
    FeedProcess,
    Flow,
    Replay,
    engine_seq,
)
from timing import wait_until, wait_until_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contract import keys
from contract.events import Trade
from contract.market import DEFAULT_MARKETS
from contract.streams import events_of

BTC = DEFAULT_MARKETS[0]
SYMBOL = BTC.symbol


# -- fixtures -----------------------------------------------------------------------


class Stack:
    """Redis (fixture), one engine process, and the feeds a test starts."""

    def __init__(self, tmp_path: Path, redis_url: str, **engine: int | float) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url)
        lines = ["[engine]"] + [f"{k} = {v!r}" for k, v in engine.items()]
        self.config = tmp_path / "streamex.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.engine = EngineProcess(redis_url, self.config, tmp_path / "engine.log").start()
        self.feeds: list[FeedProcess] = []

    def feed(self, *extra: str) -> FeedProcess:
        n = len(self.feeds)
        f = FeedProcess(self.redis_url, self.config, self.tmp_path / f"feed{n}.log")
        f.args += list(extra)
        self.feeds.append(f.start())
        return f

    def wait_engine(self, seq: int, timeout_s: float = 20.0) -> None:
        wait_until(lambda: engine_seq(self.client, SYMBOL) >= seq, timeout_s,
                   f"engine to reach seq {seq}")

    def close(self) -> None:
        for f in self.feeds:
            f.kill()
        self.engine.kill()
        self.client.close()


@pytest.fixture
def stack_factory(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(**engine: int | float) -> Stack:
        s = Stack(tmp_path, redis_url, **engine)
        stacks.append(s)
        return s

    try:
        yield make
    finally:
        for s in stacks:
            s.close()


class Collector:
    """Reads one connection into a list of ``(monotonic receive time, message)``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.msgs: list[tuple[float, dict[str, Any]]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for frame in self.ws:
                self.msgs.append((time.monotonic(), json.loads(frame)))
        except ConnectionClosed:
            pass

    async def send(self, request_id: int, method: str, params: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
        await self.wait_for(lambda m: m.get("id") == request_id, f"reply {request_id}")

    async def wait_for(self, predicate: Any, what: str, timeout_s: float = 20.0,
                       start: int = 0, poll_s: float = 0.01) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = start
        while True:
            for i in range(seen, len(self.msgs)):
                if predicate(self.msgs[i][1]):
                    return self.msgs[i][1]
            seen = len(self.msgs)
            if self.task.done() or time.monotonic() > deadline:
                raise AssertionError(f"no {what} (closed: {self.task.done()})")
            await asyncio.sleep(poll_s)

    async def wait_synced(self, seq: int, timeout_s: float = 20.0, poll_s: float = 0.01) -> None:
        """Until a heartbeat says this connection has everything up to ``seq``."""
        await self.wait_for(lambda m: m.get("channel") == "heartbeat"
                            and m["seqs"].get(SYMBOL, -1) >= seq, f"heartbeat at seq {seq}",
                            timeout_s, poll_s=poll_s)

    def pushes(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [m for _, m in self.msgs if "channel" in m and m["channel"] != "heartbeat"
                and (channel is None or m["channel"] == channel)]


@pytest.fixture
async def collectors() -> AsyncIterator[list[Collector]]:
    made: list[Collector] = []
    yield made
    for c in made:
        c.task.cancel()
        await c.ws.close()


async def open_collector(url: str, made: list[Collector], **kw: Any) -> Collector:
    c = Collector(await connect(url, max_size=None, **kw))
    made.append(c)
    return c


async def drive(stack: Stack, flow: Flow, start: int, stop: int, seed: int,
                max_chunk: int = 15) -> list[float]:
    """XADD commands ``[start, stop)`` in small paced chunks (many engine batches).

    Returns the monotonic time each command was XADDed.
    """
    rng = random.Random(seed)
    times: list[float] = []
    i = start
    while i < stop:
        k = min(rng.randint(1, max_chunk), stop - i)
        flow.xadd(stack.client, i, i + k)
        times.extend([time.monotonic()] * k)
        i += k
        await asyncio.sleep(0.002)
    return times


# -- verification -------------------------------------------------------------------


def verify_book(msgs: list[dict[str, Any]], flow: Flow, depth: int) -> BookMirror:
    """Every book message chains, checksums, and equals the engine's top levels at its seq."""
    mirror = BookMirror(depth)
    replay = Replay(flow)
    for msg in msgs:
        mirror.apply(msg)
        replay.to_seq(msg["seq"])
        assert mirror.top("buy") == replay.top("buy", depth), f"bids differ at {msg['seq']}"
        assert mirror.top("sell") == replay.top("sell", depth), f"asks differ at {msg['seq']}"
    return mirror


def final_top(flow: Flow, side: str, depth: int) -> list[list[str]]:
    return [[BTC.format_price(p), BTC.format_qty(q)] for p, q in flow.book.depth(side, depth)]


def verify_trades(msgs: list[dict[str, Any]], client: redis.Redis,
                  expected: list[Trade]) -> None:
    """Trades arrive once each, in order, one message per engine batch, as the engine made them."""
    got = [t for m in msgs for t in m["data"]]
    assert [t["trade_id"] for t in got] == [t.trade_id for t in expected]
    assert got == [{"trade_id": t.trade_id, "price": BTC.format_price(t.price),
                    "qty": BTC.format_qty(t.qty), "taker_side": t.taker_side, "ts": t.ts}
                   for t in expected]
    per_entry = []
    for _, fields in client.xrange(keys.out_stream(SYMBOL)):  # type: ignore[union-attr]
        trades = [e for e in events_of(fields) if isinstance(e, Trade)]
        if trades:
            per_entry.append(([t.trade_id for t in trades], trades[-1].seq))
    assert [([t["trade_id"] for t in m["data"]], m["seq"]) for m in msgs] == per_entry


def verify_tickers(msgs: list[dict[str, Any]], flow: Flow) -> None:
    """Each ticker equals the engine's state at its seq, 24-hour fields included (the
    flow's trades all fall in one minute), and differs from the one before."""
    replay = Replay(flow)
    previous = None
    trades = flow.trades()
    for msg in msgs:
        replay.to_seq(msg["seq"])
        bid, ask = replay.top("buy", 1), replay.top("sell", 1)
        last = replay.last_trade
        state = (msg["best_bid"], msg["best_bid_qty"], msg["best_ask"], msg["best_ask_qty"],
                 msg["last_price"], msg["last_qty"])
        assert state == (*(bid[0] if bid else [None, None]), *(ask[0] if ask else [None, None]),
                         None if last is None else BTC.format_price(last.price),
                         None if last is None else BTC.format_qty(last.qty))
        done = [t for t in trades if t.seq <= msg["seq"]]
        day = (msg["open_24h"], msg["high_24h"], msg["low_24h"], msg["volume_24h"],
               msg["quote_volume_24h"])
        if done:
            prices = [t.price for t in done]
            assert day == (BTC.format_price(prices[0]), BTC.format_price(max(prices)),
                           BTC.format_price(min(prices)),
                           BTC.format_qty(sum(t.qty for t in done)),
                           BTC.format_quote(sum(BTC.notional(t.price, t.qty) for t in done)))
        else:
            assert day == (None, None, None, "0.0000", "0.000000")
        assert msg["ts"] >= (done[-1].ts if done else 0)
        assert (state, day) != previous, "ticker sent without a change"
        previous = (state, day)


# -- tests --------------------------------------------------------------------------


async def test_subscribers_rebuild_the_engine_book_trades_and_ticker(
        stack_factory: Any, collectors: list[Collector]) -> None:
    stack: Stack = stack_factory(snapshot_every=700)
    feed = stack.feed()
    flow = Flow(BTC, 3000, seed=21)
    conns = {}
    for depth in (10, 25, 100, 500):
        c = await open_collector(feed.url, collectors)
        await c.send(1, "subscribe", {"channel": "book", "symbol": SYMBOL, "depth": depth})
        conns[depth] = c
    main = conns[10]
    await main.send(2, "subscribe", {"channel": "trades", "symbol": SYMBOL})
    await main.send(3, "subscribe", {"channel": "ticker", "symbol": SYMBOL})
    for part in range(3):  # with intermediate sync points
        await drive(stack, flow, part * 1000, (part + 1) * 1000, seed=part)
        seq = flow_seq(flow, (part + 1) * 1000)
        stack.wait_engine(seq)
        for c in conns.values():
            await c.wait_synced(seq)
        for depth, c in conns.items():
            verify_book(c.pushes("book"), flow, depth)
    for depth, c in conns.items():
        mirror = verify_book(c.pushes("book"), flow, depth)
        assert mirror.snapshots == 1 and mirror.updates > 100
        assert mirror.top("buy") == final_top(flow, "buy", depth)
        assert mirror.top("sell") == final_top(flow, "sell", depth)
    assert len(flow.book.bids) > 100 and len(flow.book.asks) > 100
    snapshot, *updates = main.pushes("trades")
    assert (snapshot["type"], snapshot["data"]) == ("snapshot", [])  # subscribed before any
    verify_trades(updates, stack.client, flow.trades())
    assert len(flow.trades()) > 200
    verify_tickers(main.pushes("ticker"), flow)


def flow_seq(flow: Flow, commands: int) -> int:
    """Engine seq after the first ``commands`` commands of the flow."""
    return sum(len(evs) for evs in flow.events[:commands])


async def test_feeds_side_by_side_agree_and_a_killed_one_resyncs(
        stack_factory: Any, collectors: list[Collector]) -> None:
    stack: Stack = stack_factory(snapshot_every=200)
    feeds = [stack.feed(), stack.feed(), stack.feed()]
    flow = Flow(BTC, 2400, seed=22)
    conns = []
    for f in feeds:
        c = await open_collector(f.url, collectors)
        await c.send(1, "subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 25})
        await c.send(2, "subscribe", {"channel": "trades", "symbol": SYMBOL})
        await c.send(3, "subscribe", {"channel": "ticker", "symbol": SYMBOL})
        conns.append(c)
    await drive(stack, flow, 0, 1200, seed=1)
    stack.wait_engine(flow_seq(flow, 1200))
    await conns[2].wait_for(lambda m: m.get("channel") in ("book", "trades")
                            and m["seq"] > flow_seq(flow, 600), "progress on feed 2")
    feeds[2].kill()  # kill -9, mid-flow
    driving = asyncio.create_task(drive(stack, flow, 1200, 2400, seed=2))
    # The feed restarts mid-flow: once the engine applied some of the second half.
    await wait_until_async(lambda: engine_seq(stack.client, SYMBOL) > flow_seq(flow, 1300),
                           what="the second half under way")
    restarted = stack.feed()
    late = await open_collector(restarted.url, collectors)
    await late.send(1, "subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 25})
    await late.send(2, "subscribe", {"channel": "trades", "symbol": SYMBOL})
    await driving
    final = flow.book.seq
    stack.wait_engine(final)
    for c in (conns[0], conns[1], late):
        await c.wait_synced(final)
    # Two feeds that ran side by side sent the same messages, byte for byte.
    assert conns[0].pushes() == conns[1].pushes()
    assert len(conns[0].pushes("book")) > 100
    # The killed feed's messages, while it lived, were the same too.
    killed = conns[2].pushes()
    assert len(killed) > 50 and killed == conns[0].pushes()[:len(killed)]
    # The restarted feed started from the engine snapshot and caught up by itself.
    mirror = verify_book(late.pushes("book"), flow, 25)
    assert mirror.top("buy") == final_top(flow, "buy", 25)
    assert mirror.top("sell") == final_top(flow, "sell", 25)
    late_trades = [t for m in late.pushes("trades") for t in m["data"]]
    assert late_trades, "no trades after the restart"
    all_trades = [t for m in conns[0].pushes("trades") for t in m["data"]]
    assert late_trades == all_trades[-len(late_trades):]


async def test_feed_behind_a_trimmed_stream_restores_the_snapshot(
        stack_factory: Any, collectors: list[Collector]) -> None:
    stack: Stack = stack_factory(snapshot_every=100, out_retention=1)
    stack.client.config_set("stream-node-max-entries", 5)  # let MAXLEN ~ trim finely
    feed = stack.feed()
    flow = Flow(BTC, 1500, seed=23)
    c = await open_collector(feed.url, collectors)
    await c.send(1, "subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 100})
    await drive(stack, flow, 0, 300, seed=1)
    stack.wait_engine(flow_seq(flow, 300))
    await c.wait_synced(flow_seq(flow, 300))
    assert feed.proc is not None
    os.kill(feed.proc.pid, signal.SIGSTOP)
    try:
        await drive(stack, flow, 300, 1500, seed=2)
        stack.wait_engine(flow.book.seq)
        first = stack.client.xrange(keys.out_stream(SYMBOL), count=1)[0]  # type: ignore
        assert events_of(first[1])[0].seq > flow_seq(flow, 300) + 1, "stream was not trimmed"
    finally:
        os.kill(feed.proc.pid, signal.SIGCONT)
    await c.wait_synced(flow.book.seq)
    mirror = verify_book(c.pushes("book"), flow, 100)
    assert mirror.snapshots == 1, "subscribers keep their chain across the reload"
    assert mirror.top("buy") == final_top(flow, "buy", 100)
    assert mirror.top("sell") == final_top(flow, "sell", 100)
    assert "restoring the engine snapshot" in feed.log()


async def test_a_stalled_subscriber_does_not_slow_the_others(
        stack_factory: Any, collectors: list[Collector]) -> None:
    stack: Stack = stack_factory(snapshot_every=1000)
    feed = stack.feed("--queue-limit", "100")
    flow = Flow(BTC, 2700, seed=24)
    await drive(stack, flow, 0, 1500, seed=0, max_chunk=100)  # a deep book first
    stack.wait_engine(flow_seq(flow, 1500))
    fast = []
    for _ in range(4):
        c = await open_collector(feed.url, collectors)
        await c.send(1, "subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 10})
        await c.send(2, "subscribe", {"channel": "trades", "symbol": SYMBOL})
        fast.append(c)

    async def latencies(start: int, stop: int, seed: int) -> list[float]:
        """Command XADD -> arrival of the first message carrying its last event, per client."""
        sent = await drive(stack, flow, start, stop, seed=seed, max_chunk=3)
        stack.wait_engine(flow_seq(flow, stop))
        for c in fast:
            await c.wait_synced(flow_seq(flow, stop))
        ends = [flow_seq(flow, i + 1) for i in range(stop)]
        out = []
        for c in fast:
            for received, msg in c.msgs:
                if msg.get("channel") in ("book", "trades"):
                    i = bisect.bisect_left(ends, msg["seq"])  # the command holding that seq
                    if start <= i < stop:
                        out.append(received - sent[i - start])
        return out

    baseline = await latencies(1500, 2000, seed=1)
    # A subscriber that stops reading: tiny receive buffer, reading paused.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(feed.url.rsplit(":", 1)[1].strip("/"))))
    sock.setblocking(False)
    slow_ws = await connect(feed.url, sock=sock, max_queue=1, max_size=None)
    for i in range(40):  # fill its buffers with deep snapshots, then stop reading
        await slow_ws.send(json.dumps({"id": i, "method": "subscribe", "params": {
            "channel": "book", "symbol": SYMBOL, "depth": 500}}))
    slow_ws.transport.pause_reading()
    stalled = await latencies(2000, 2700, seed=2)
    final = flow.book.seq
    slow = Collector(slow_ws)
    collectors.append(slow)
    slow_ws.transport.resume_reading()
    with contextlib.suppress(AssertionError):  # it may have been closed instead
        await slow.wait_synced(final, timeout_s=15.0)
    assert len(baseline) > 200 and len(stalled) > 200
    base_p50, base_p90 = statistics.median(baseline), statistics.quantiles(baseline, n=10)[-1]
    p50, p90 = statistics.median(stalled), statistics.quantiles(stalled, n=10)[-1]
    print(f"latency p50/p90 ms: baseline {base_p50 * 1e3:.2f}/{base_p90 * 1e3:.2f}, "
          f"with a stalled subscriber {p50 * 1e3:.2f}/{p90 * 1e3:.2f}; "
          f"stalled one closed: {slow_ws.close_code}")
    assert p50 <= 3 * base_p50 + 0.010, (base_p50, p50)
    assert p90 <= 3 * base_p90 + 0.020, (base_p90, p90)
    # The stalled one got a fresh snapshot and a consistent book, or a 1008 close.
    if slow_ws.close_code is not None:
        assert (slow_ws.close_code, slow_ws.close_reason) == (1008, "slow consumer")
    else:
        books = slow.pushes("book")
        mirror = BookMirror(500)
        for msg in books:
            mirror.apply(msg)
        assert mirror.snapshots > 40, "no resync snapshot"
        assert mirror.top("buy") == final_top(flow, "buy", 500)
    everything = flow.trades()
    for c in fast:
        got = [t["trade_id"] for m in c.pushes("trades") for t in m["data"]]
        assert got == [t.trade_id for t in everything[-len(got):]] and len(got) > 50
    assert "slow consumer" in feed.log()


async def test_500_subscribers_all_receive_every_trade(
        stack_factory: Any, collectors: list[Collector]) -> None:
    stack: Stack = stack_factory(snapshot_every=1000)
    feed = stack.feed()
    flow = Flow(BTC, 1200, seed=25)
    clients: list[Collector] = []
    for _ in range(10):  # in waves, within the listen backlog
        clients += await asyncio.gather(*(open_collector(feed.url, collectors)
                                          for _ in range(50)))
    await asyncio.gather(*(c.send(1, "subscribe", {"channel": "trades", "symbol": SYMBOL})
                           for c in clients))
    await drive(stack, flow, 0, 1200, seed=3, max_chunk=30)
    stack.wait_engine(flow.book.seq)
    expected = [t.trade_id for t in flow.trades()]
    assert len(expected) > 50
    await asyncio.gather(*(c.wait_synced(flow.book.seq, timeout_s=25.0, poll_s=0.1)
                           for c in clients))
    for c in clients:
        assert [t["trade_id"] for m in c.pushes("trades") for t in m["data"]] == expected


def test_cli_rejects_bad_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[marketdata]\nport = \"8002\"\n")
    run = [sys.executable, "-m", "streamex", "marketdata"]
    result = subprocess.run([*run, "--config", str(bad), "--redis-url", "redis://127.0.0.1:1"],
                            capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 2 and "marketdata.port" in result.stderr
    result = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 2 and "--redis-url" in result.stderr


def test_cli_serves_until_sigterm(tmp_path: Path, redis_url: str) -> None:
    feed = FeedProcess(redis_url, tmp_path / "none.toml", tmp_path / "feed.log")
    feed.args.remove("--config")
    feed.args.remove(str(tmp_path / "none.toml"))
    feed.start()
    try:
        assert feed.url.startswith("ws://127.0.0.1:")
        assert feed.stop() == 0
    finally:
        feed.kill()

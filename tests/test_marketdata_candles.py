"""Section C end to end: real Redis, a real engine, ``streamex marketdata`` and ``streamex
history`` processes, websocket subscribers written from PROTOCOL.md.

Commands are XADDed to ``sx:{BTC-USD}:in`` with explicit entry ids an hour or more
in the past, one minute apart (some minutes without trades), so the engine's
clock (the entry ids) spans hundreds of candles within a second of test time.
What the engine really traded is read back from ``:out`` and turned into the
expected candles, trades and 24-hour fields by the Decimal reference of
``test_marketdata_history``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from marketdata_helpers import REPO, Child, EngineProcess, FeedProcess
from test_marketdata_history import (
    CandleMirror,
    wire_candles,
    wire_stats,
    wire_trade,
)
from timing import TIMEOUT_S, wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contract import keys
from contract.commands import Command, Place, encode_command
from contract.errors import StreamexError
from contract.events import Event, Trade
from contract.market import DEFAULT_MARKETS
from contract.settings import RedisConfig
from contract.snapshot import decode_snapshot
from contract.streams import IN_FIELD, events_of
from marketdata.service import MarketDataService
from store.db import open_store
from streamex.client import MarketDataClient

BTC = DEFAULT_MARKETS[0]
SYMBOL = BTC.symbol
MINUTE = 60_000
HOUR = 60 * MINUTE


# -- commands a minute apart ---------------------------------------------------------------


class MinuteFlow:
    """Seeded commands, ``minute`` by ``minute`` from ``base_ms``: in most minutes a maker
    sells and one or two takers buy from the book (trades); every seventh minute nothing."""

    def __init__(self, base_ms: int, seed: int) -> None:
        self.base = base_ms - base_ms % MINUTE
        self.rng = random.Random(seed)
        self.price = 3_000_000
        self.minute = 0
        self.entries: list[tuple[str, Command]] = []

    def trade_minutes(self, n: int) -> list[tuple[str, Command]]:
        """The next ``n`` minutes' commands (appended to :attr:`entries`)."""
        out: list[tuple[str, Command]] = []
        rng = self.rng
        for _ in range(n):
            m, self.minute = self.minute, self.minute + 1
            if m % 7 == 3:
                continue  # a minute without trades: no candle
            at = self.base + m * MINUTE + rng.randrange(1_000, 20_000)
            self.price += rng.randint(-300, 300)
            out.append((f"{at}-0", Place("a1", "sell", "limit", rng.randint(3, 9), self.price)))
            for k in range(rng.choice((1, 1, 2))):
                out.append((f"{at + 1_000 + k * 7_000}-0",
                            Place("a2", "buy", "limit", rng.randint(1, 4),
                                  self.price + rng.randint(0, 200), tif="IOC")))
        self.entries += out
        return out

    def skip(self, minutes: int) -> None:
        """Let ``minutes`` pass without commands."""
        self.minute += minutes

    def rest_only(self, minutes_later: int) -> list[tuple[str, Command]]:
        """One resting bid ``minutes_later`` minutes on: a book event, no trade."""
        self.minute += minutes_later - 1
        at = self.base + self.minute * MINUTE + 5_000
        self.minute += 1
        out: list[tuple[str, Command]] = [(f"{at}-0", Place("a3", "buy", "limit", 1, 1_000))]
        self.entries += out
        return out


def xadd(client: redis.Redis, entries: list[tuple[str, Command]]) -> None:
    pipe = client.pipeline(transaction=False)
    for entry_id, cmd in entries:
        pipe.xadd(keys.in_stream(SYMBOL), {IN_FIELD: encode_command(cmd)}, id=entry_id)
    pipe.execute()


def out_entries(client: redis.Redis) -> list[list[Event]]:
    return [events_of(fields)
            for _, fields in client.xrange(keys.out_stream(SYMBOL))]  # type: ignore[union-attr]


def engine_trades(client: redis.Redis) -> list[Trade]:
    return [e for evs in out_entries(client) for e in evs if isinstance(e, Trade)]


# -- processes and subscribers ---------------------------------------------------------------


class HistoryProcess(Child):
    """``streamex history`` into ``db``."""

    def __init__(self, redis_url: str, config: Path, db: str, log_path: Path) -> None:
        super().__init__(["history", "--config", str(config), "--redis-url", redis_url,
                          "--db", db], log_path)


class Stack:
    def __init__(self, tmp_path: Path, redis_url: str, **engine: int | float) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url)
        self.config = tmp_path / "streamex.toml"
        lines = ["[engine]"] + [f"{k} = {v!r}" for k, v in engine.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.db = f"sqlite:///{tmp_path / 'history.sqlite3'}"
        self.children: list[Child] = [
            EngineProcess(redis_url, self.config, tmp_path / "engine.log").start()]
        self.history: HistoryProcess | None = None
        self.n = 0

    def feed(self, *extra: str) -> FeedProcess:
        self.n += 1
        f = FeedProcess(self.redis_url, self.config, self.tmp_path / f"feed{self.n}.log")
        f.args += list(extra)
        self.children.append(f.start())
        return f

    def start_history(self) -> HistoryProcess:
        self.n += 1
        h = HistoryProcess(self.redis_url, self.config, self.db,
                           self.tmp_path / f"history{self.n}.log")
        self.history = h
        self.children.append(h.start())
        return h

    def wait_engine(self, entries: list[tuple[str, Command]]) -> None:
        """Until the engine applied everything XADDed (its :in group has nothing pending)."""
        def done() -> bool:
            groups = self.client.xinfo_groups(keys.in_stream(SYMBOL))
            return bool(groups) and groups[0]["pending"] == 0 and \
                groups[0]["last-delivered-id"].decode() == entries[-1][0]
        wait_until(done, what="the engine to apply every command")

    def wait_history(self, trade_id: int) -> None:
        with open_store(self.db) as store:
            wait_until(lambda: store.last_trade_id(SYMBOL) >= trade_id,
                       what=f"history to write trade {trade_id}")

    def close(self) -> None:
        for c in self.children:
            c.kill()
        self.client.close()


@pytest.fixture
def stack_factory(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(**engine: int | float) -> Stack:
        stacks.append(Stack(tmp_path, redis_url, **engine))
        return stacks[-1]

    try:
        yield make
    finally:
        for s in stacks:
            s.close()


class Subscriber:
    """One connection: every message kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.msgs: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())
        self.next_id = 1

    async def _run(self) -> None:
        try:
            async for frame in self.ws:
                self.msgs.append(json.loads(frame))
        except ConnectionClosed:
            pass

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid, self.next_id = self.next_id, self.next_id + 1
        await self.ws.send(json.dumps({"id": rid, "method": method, "params": params}))
        return await self.wait_for(lambda m: m.get("id") == rid, f"reply {rid}")

    async def wait_for(self, predicate: Any, what: str, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for m in self.msgs[start:]:
                if predicate(m):
                    return m
            if self.task.done() or time.monotonic() > deadline:
                raise AssertionError(f"no {what}; last: {self.msgs[-3:]}")
            await asyncio.sleep(0.01)

    async def synced(self, seq: int) -> None:
        """Until a heartbeat says this connection has everything up to ``seq`` (heartbeats
        name the symbols subscribed to: subscribe to the book first if nothing else)."""
        if not any(m.get("channel") not in (None, "heartbeat") for m in self.msgs):
            await self.call("subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 10})
        await self.wait_for(lambda m: m.get("channel") == "heartbeat"
                            and m["seqs"].get(SYMBOL, -1) >= seq, f"heartbeat at seq {seq}")

    def pushes(self, channel: str, **match: Any) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m.get("channel") == channel
                and all(m.get(k) == v for k, v in match.items())]


@pytest.fixture
async def subscribers() -> AsyncIterator[Any]:
    made: list[Subscriber] = []

    async def make(url: str) -> Subscriber:
        made.append(Subscriber(await connect(url, max_size=None)))
        return made[-1]

    yield make
    for s in made:
        s.task.cancel()
        await s.ws.close()


def last_seq_ts(client: redis.Redis) -> tuple[int, int]:
    evs = out_entries(client)[-1]
    return evs[-1].seq, max(e.ts for e in evs)


# -- live: snapshots, updates, closing -----------------------------------------------------------


async def test_candles_trades_ticker_and_book_live_from_the_engine(
        stack_factory: Any, subscribers: Any) -> None:
    stack: Stack = stack_factory(snapshot_every=50)
    feed = stack.feed()
    flow = MinuteFlow(int(time.time() * 1000) - 30 * HOUR, seed=41)
    xadd(stack.client, flow.trade_minutes(20))
    flow.skip(23 * 60 + 30)  # so that the first trades leave the 24-hour window
    xadd(stack.client, flow.trade_minutes(130))
    stack.wait_engine(flow.entries)
    trades = engine_trades(stack.client)
    seq, clock = last_seq_ts(stack.client)
    assert len(trades) > 100

    sub: Subscriber = await subscribers(feed.url)
    await sub.synced(seq)  # the feed has applied everything
    mirrors = {}
    for interval, width in (("1m", MINUTE), ("1h", HOUR)):
        reply = await sub.call("subscribe", {"channel": "candles", "symbol": SYMBOL,
                                             "interval": interval})
        assert reply["result"] == {"subscribed": {"channel": "candles", "symbol": SYMBOL,
                                                  "interval": interval}}
        snap = await sub.wait_for(lambda m, i=interval: m.get("channel") == "candles"
                                  and m["interval"] == i, f"{interval} snapshot")
        assert (snap["type"], snap["symbol"], snap["seq"]) == ("snapshot", SYMBOL, seq)
        expected = wire_candles(BTC, trades, width, clock)
        assert snap["data"] == expected[-100:], interval
        mirrors[interval] = CandleMirror()
        mirrors[interval].apply(snap)
    assert len(wire_candles(BTC, trades, MINUTE, clock)) > 100  # the snapshot was cut
    assert all(c["closed"] for c in mirrors["1m"].last(100)[:-1])

    await sub.call("subscribe", {"channel": "trades", "symbol": SYMBOL})
    snap = await sub.wait_for(lambda m: m.get("channel") == "trades", "trades snapshot")
    assert (snap["type"], snap["seq"]) == ("snapshot", seq)
    assert snap["data"] == [wire_trade(BTC, t) for t in trades[-50:]]
    await sub.call("subscribe", {"channel": "ticker", "symbol": SYMBOL})
    ticker = await sub.wait_for(lambda m: m.get("channel") == "ticker", "ticker snapshot")
    assert ticker["ts"] == clock
    assert {k: ticker[k] for k in wire_stats(BTC, [], 0)} == wire_stats(BTC, trades, clock)
    assert ticker["volume_24h"] != wire_stats(BTC, trades, trades[-1].ts - 2 * HOUR)[
        "volume_24h"], "the window rolled"
    mark = len(sub.msgs)
    await sub.call("subscribe", {"channel": "book", "symbol": SYMBOL, "depth": 25})
    book = await sub.wait_for(lambda m: m.get("channel") == "book", "book snapshot", mark)
    assert (book["type"], book["ts"]) == ("snapshot", clock)
    reply = await sub.call("subscribe", {"channel": "candles", "symbol": SYMBOL,
                                         "interval": "2m"})
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert reply["error"]["message"].startswith("params.interval: '2m' is not one of 1m")

    # Live: trades in the next minutes, then a resting order alone three minutes later.
    mark = len(sub.msgs)
    xadd(stack.client, flow.trade_minutes(3))
    stack.wait_engine(flow.entries)
    await sub.synced(last_seq_ts(stack.client)[0])
    rested = len(sub.msgs)
    xadd(stack.client, flow.rest_only(3))
    stack.wait_engine(flow.entries)
    seq, clock = last_seq_ts(stack.client)
    await sub.synced(seq)
    trades = engine_trades(stack.client)
    for interval, width in (("1m", MINUTE), ("1h", HOUR)):
        for msg in sub.msgs[mark:]:
            if msg.get("channel") == "candles" and msg["interval"] == interval:
                assert msg["type"] == "update"
                mirrors[interval].apply(msg)
        assert mirrors[interval].last(100) == wire_candles(BTC, trades, width, clock)[-100:]
    # The resting order's event (no trade) moved the clock past the last candle's close:
    # that candle came once more, closed, and only that.
    updates = [m for m in sub.msgs[rested:] if m.get("channel") == "candles"
               and m["interval"] == "1m"]
    last_candle = wire_candles(BTC, trades, MINUTE, clock)[-1]
    assert last_candle["closed"] and [m["data"] for m in updates] == [[last_candle]]
    assert mirrors["1m"].updates >= 2
    new_trades = [t for m in sub.msgs[mark:] if m.get("channel") == "trades"
                  for t in m["data"]]
    assert new_trades and new_trades == [wire_trade(BTC, t) for t in trades[-len(new_trades):]]
    ticker = sub.pushes("ticker")[-1]
    assert ticker["type"] == "update" and ticker["ts"] >= trades[-1].ts
    assert {k: ticker[k] for k in wire_stats(BTC, [], 0)} == wire_stats(
        BTC, trades, ticker["ts"])
    # Book updates carry the ts of the last event of their engine commit.
    commit_ts = {evs[-1].seq: max(e.ts for e in evs) for evs in out_entries(stack.client)}
    books = [m for m in sub.msgs[mark:] if m.get("channel") == "book"]
    assert books and all(m["ts"] == commit_ts[m["seq"]] for m in books if m["seq"] in commit_ts)
    # The SDK subscribes to candles too, and gets the same snapshot.
    async with MarketDataClient.connect(feed.url) as md:
        result = await md.subscribe("candles", SYMBOL, interval="1h")
        assert result == {"subscribed": {"channel": "candles", "symbol": SYMBOL,
                                         "interval": "1h"}}
        snap = await md.next_push()
        assert (snap["channel"], snap["type"]) == ("candles", "snapshot")
        assert snap["data"] == mirrors["1h"].last(100)
        with pytest.raises(StreamexError) as refused:
            await md.subscribe("candles", SYMBOL, interval="3m")
        assert refused.value.code == "BAD_REQUEST" and "params.interval" in refused.value.message
    # Unsubscribing one interval stops it; the other goes on.
    await sub.call("unsubscribe", {"channel": "candles", "symbol": SYMBOL, "interval": "1m"})
    mark = len(sub.msgs)
    xadd(stack.client, flow.trade_minutes(2))
    stack.wait_engine(flow.entries)
    await sub.synced(last_seq_ts(stack.client)[0])
    got = {m["interval"] for m in sub.msgs[mark:] if m.get("channel") == "candles"}
    assert got == {"1h"}


# -- restarts: the history database, then the stream ------------------------------------------


def seeded(feed: FeedProcess) -> tuple[int, int]:
    """(the database's last trade, the engine snapshot's) as the restarted feed logged them."""
    found = re.search(r"BTC-USD: history seeded: \d+ trades, last trade (\d+); engine "
                      r"snapshot at trade (\d+)", feed.log())
    assert found is not None, feed.log()
    return int(found[1]), int(found[2])


async def subscribe_all(sub: Subscriber, seq: int) -> dict[str, Any]:
    await sub.synced(seq)
    out: dict[str, Any] = {}
    for interval in ("1m", "15m", "1d"):
        await sub.call("subscribe", {"channel": "candles", "symbol": SYMBOL,
                                     "interval": interval})
        out[interval] = await sub.wait_for(
            lambda m, i=interval: m.get("channel") == "candles" and m["interval"] == i,
            f"{interval} snapshot")
    await sub.call("subscribe", {"channel": "trades", "symbol": SYMBOL})
    out["trades"] = await sub.wait_for(lambda m: m.get("channel") == "trades", "trades")
    await sub.call("subscribe", {"channel": "ticker", "symbol": SYMBOL})
    out["ticker"] = await sub.wait_for(lambda m: m.get("channel") == "ticker", "ticker")
    return out


def check_history(got: dict[str, Any], trades: list[Trade], clock: int) -> None:
    for interval, width in (("1m", MINUTE), ("15m", 15 * MINUTE), ("1d", 24 * HOUR)):
        assert got[interval]["data"] == wire_candles(BTC, trades, width, clock)[-100:], interval
    assert got["trades"]["data"] == [wire_trade(BTC, t) for t in trades[-50:]]
    assert {k: got["ticker"][k] for k in wire_stats(BTC, [], 0)} == wire_stats(
        BTC, trades, got["ticker"]["ts"])


async def test_history_survives_feed_restarts_from_the_database_and_the_stream(
        stack_factory: Any, subscribers: Any) -> None:
    """The feed restarts (kill -9) three times: with the database behind the engine
    snapshot (the rest counted from ``:out``), with it ahead of the snapshot (those
    trades skipped, not counted twice), and with ``:out`` trimmed below the database
    (the history comes from the database alone). Each time the candles, trades and
    24-hour fields equal the reference over every trade the engine made."""
    stack: Stack = stack_factory(snapshot_every=20, out_retention=100_000)
    flow = MinuteFlow(int(time.time() * 1000) - 40 * HOUR, seed=42)
    history = stack.start_history()
    xadd(stack.client, flow.trade_minutes(120))
    stack.wait_engine(flow.entries)
    stack.wait_history(engine_trades(stack.client)[-1].trade_id)
    history.kill()  # the database stops here
    xadd(stack.client, flow.trade_minutes(60))
    stack.wait_engine(flow.entries)
    trades = engine_trades(stack.client)
    seq, clock = last_seq_ts(stack.client)

    # 1. The database is behind the engine snapshot: the stream fills the difference.
    feed = stack.feed("--db", stack.db)
    got = await subscribe_all(await subscribers(feed.url), seq)
    check_history(got, trades, clock)
    db_trade, snap_trade = seeded(feed)
    assert db_trade < snap_trade
    assert f"{snap_trade - db_trade} trades counted from the stream up to the engine " \
        "snapshot" in feed.log()
    feed.kill()

    # 2. The database is ahead of the snapshot: history caught up, and the engine
    # snapshots every 20 commands, the last few came after its last one.
    stack.start_history()
    xadd(stack.client, flow.trade_minutes(10))
    stack.wait_engine(flow.entries)
    xadd(stack.client, flow.trade_minutes(3))  # fewer than 20 commands
    stack.wait_engine(flow.entries)
    trades = engine_trades(stack.client)
    stack.wait_history(trades[-1].trade_id)
    seq, clock = last_seq_ts(stack.client)
    feed = stack.feed("--db", stack.db)
    sub = await subscribers(feed.url)
    got = await subscribe_all(sub, seq)
    check_history(got, trades, clock)
    db_trade, snap_trade = seeded(feed)
    assert db_trade > snap_trade
    mark = len(sub.msgs)
    xadd(stack.client, flow.trade_minutes(2))
    stack.wait_engine(flow.entries)
    trades = engine_trades(stack.client)
    seq, clock = last_seq_ts(stack.client)
    await sub.synced(seq)
    live = [t["trade_id"] for m in sub.msgs[mark:] if m.get("channel") == "trades"
            for t in m["data"]]
    assert live == [t.trade_id for t in trades[-len(live):]] and live
    assert live[0] == got["trades"]["data"][-1]["trade_id"] + 1  # nothing twice, no hole
    feed.kill()

    # 3. Retention trimmed the stream: only the database still has the early trades.
    stack.wait_history(trades[-1].trade_id)
    stack.client.xtrim(keys.out_stream(SYMBOL), maxlen=5)
    assert engine_trades(stack.client)[0].trade_id > trades[0].trade_id
    feed = stack.feed("--db", stack.db)
    got = await subscribe_all(await subscribers(feed.url), seq)
    check_history(got, trades, clock)
    assert "neither in the history database nor in the stream" not in feed.log()
    feed.kill()

    # Without a database the history starts empty at the engine snapshot.
    snap = decode_snapshot(stack.client.get(keys.snap_key(SYMBOL)))  # type: ignore[arg-type]
    feed = stack.feed()
    got = await subscribe_all(await subscribers(feed.url), seq)
    after = [t for t in trades if t.trade_id > snap.trade_id]
    assert after and len(after) < 50
    check_history(got, after, clock)
    feed.kill()


def test_cli_db_option_is_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "streamex", "marketdata", "--redis-url",
                             "redis://127.0.0.1:1", "--db", "mysql://x"],
                            capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 2 and "--db" in result.stderr


async def test_a_database_that_cannot_be_opened_is_logged_and_the_feed_serves(
        redis_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    service = MarketDataService(DEFAULT_MARKETS, redis_url, redis=RedisConfig(),
                                history_url=f"sqlite:///{blocker}/history.sqlite3")
    try:
        await service.start("127.0.0.1", 0)
        assert service.store is None
        assert "cannot open" in caplog.text and "start empty" in caplog.text
        async with connect(f"ws://127.0.0.1:{service.port}/") as ws:
            await ws.send(json.dumps({"id": 1, "method": "subscribe", "params": {
                "channel": "candles", "symbol": SYMBOL, "interval": "1d"}}))
            assert "result" in json.loads(await ws.recv())
            snap = json.loads(await ws.recv())
            assert (snap["type"], snap["data"]) == ("snapshot", [])
    finally:
        await service.close()


async def test_a_database_of_another_run_is_not_used(
        redis_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """A database that has read the stream beyond its end (Redis was reset, the database
    kept) would make the feed skip every new trade as already counted: it is refused."""
    from store.batch import Batch

    db = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    with open_store(db) as store:
        store.write(Batch(positions=[(SYMBOL, None, "1700000000000-0", 9)],
                          trades=[(SYMBOL, 1, 9, 1_700_000_000_000, 3_000_000, 5, "buy",
                                   "1699999999999-0", "1700000000000-0")]))
    service = MarketDataService(DEFAULT_MARKETS, redis_url, redis=RedisConfig(),
                                history_url=db)
    try:
        await service.start("127.0.0.1", 0)
        assert "from another run of the exchange" in caplog.text
        assert json.loads(service.feeds[SYMBOL].trades_snapshot())["data"] == []
        assert service.feeds[SYMBOL].history_trade_id == 0
    finally:
        await service.close()

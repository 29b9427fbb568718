"""The websocket server over real loopback sockets, fed in-process from an OrderBook.

Protocol replies and errors, subscription lifecycle, heartbeats and the
slow-consumer policy. (Redis and the engine process are exercised in
test_marketdata_integration.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from marketdata_helpers import BookMirror, Flow, recv_json, request
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contract import errors
from contract.market import DEFAULT_MARKETS
from marketdata.feed import MarketFeed
from marketdata.server import FeedServer

BTC = DEFAULT_MARKETS[0]


class Harness:
    """A started FeedServer and a way to publish a flow's events through it."""

    def __init__(self, server: FeedServer, flow: Flow) -> None:
        self.server = server
        self.flow = flow
        self.feed = server.feeds["BTC-USD"]
        self.next = 0
        self.url = f"ws://127.0.0.1:{server.port}/"

    def publish(self, commands: int, per_batch: int = 1) -> None:
        """Publish the next ``commands`` commands' events, ``per_batch`` per engine batch."""
        stop = min(self.next + commands, len(self.flow.events))
        for i in range(self.next, stop, per_batch):
            events = [e for evs in self.flow.events[i:min(i + per_batch, stop)] for e in evs]
            batch = self.feed.apply(events)
            if not batch.empty:
                self.server.publish(self.feed, batch)
        self.next = stop

    def top(self, side: str, depth: int) -> list[list[str]]:
        replay = OrderBookAt(self.flow, self.feed.seq)
        return replay.top(side, depth)


class OrderBookAt:
    def __init__(self, flow: Flow, seq: int) -> None:
        from marketdata_helpers import Replay

        self.replay = Replay(flow)
        if seq:
            self.replay.to_seq(seq)

    def top(self, side: str, depth: int) -> list[list[str]]:
        return self.replay.top(side, depth)


async def start(flow: Flow, **options: Any) -> Harness:
    feeds = {m.symbol: MarketFeed(m) for m in DEFAULT_MARKETS}
    server = FeedServer(DEFAULT_MARKETS, feeds, **options)
    await server.start("127.0.0.1", 0)
    return Harness(server, flow)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = await start(Flow(BTC, 1500, seed=11))
    try:
        yield h
    finally:
        await h.server.close()


async def test_ping_markets_and_errors_keep_the_connection(harness: Harness) -> None:
    async with connect(harness.url) as ws:
        before = time.time_ns() // 1_000_000
        reply = await request(ws, "ping", request_id=5)
        assert reply["id"] == 5 and before <= reply["result"]["pong"] <= before + 5000
        reply = await request(ws, "markets", request_id="m")
        assert reply == {"id": "m", "result": {"markets": [m.to_wire() for m in DEFAULT_MARKETS]}}
        await ws.send("{nope")
        assert await recv_json(ws) == {"id": None, "error": {
            "code": errors.BAD_REQUEST, "message": "request: not valid JSON"}}
        await ws.send(b'{"id": 1, "method": "ping"}')
        assert (await recv_json(ws))["error"]["code"] == errors.BAD_REQUEST
        reply = await request(ws, "order.place", {"symbol": "BTC-USD"}, request_id=9)
        assert reply["id"] == 9 and reply["error"]["code"] == errors.UNKNOWN_METHOD
        reply = await request(ws, "subscribe", {"channel": "book", "symbol": "XRP-USD"})
        assert reply["error"]["code"] == errors.UNKNOWN_SYMBOL
        reply = await request(ws, "subscribe", {"channel": "book", "symbol": "BTC-USD",
                                                "depth": 11})
        assert reply["error"]["code"] == errors.BAD_REQUEST
        assert "result" in await request(ws, "ping")


async def test_frame_over_64_kib_closes_with_1009(harness: Harness) -> None:
    async with connect(harness.url, max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "method": "ping", "pad": "x" * 70_000}))
        with pytest.raises(ConnectionClosed):
            await recv_json(ws)
        assert ws.close_code == 1009


async def test_reply_precedes_snapshot_then_updates_chain(harness: Harness) -> None:
    harness.publish(500, per_batch=5)
    async with connect(harness.url) as ws:
        await ws.send(json.dumps({"id": 1, "method": "subscribe",
                                  "params": {"channel": "book", "symbol": "BTC-USD",
                                             "depth": 25}}))
        reply = await recv_json(ws)
        assert reply == {"id": 1, "result": {"subscribed": {
            "channel": "book", "symbol": "BTC-USD", "depth": 25}}}
        mirror = BookMirror(25)
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot"
        mirror.apply(snapshot)
        assert mirror.top("buy") == harness.top("buy", 25)
        harness.publish(500, per_batch=3)
        while mirror.seq != harness.feed.book_seq[25]:
            mirror.apply(await recv_json(ws))
        assert mirror.updates > 10
        assert mirror.top("buy") == harness.top("buy", 25)
        assert mirror.top("sell") == harness.top("sell", 25)
        # Switching depth replaces the subscription: a new snapshot, then its chain.
        reply = await request(ws, "subscribe", {"channel": "book", "symbol": "BTC-USD",
                                                "depth": 10})
        assert reply["result"]["subscribed"]["depth"] == 10
        mirror = BookMirror(10)
        mirror.apply(await recv_json(ws))
        reply = await request(ws, "unsubscribe", {"channel": "book", "symbol": "BTC-USD"})
        assert reply["result"] == {"unsubscribed": {"channel": "book", "symbol": "BTC-USD"}}
        harness.publish(300)
        # Nothing but heartbeats after unsubscribing.
        msg = await recv_json(ws, timeout_s=3.0)
        assert msg["channel"] == "heartbeat"


async def test_heartbeat_after_one_idle_second_names_the_seqs(harness: Harness) -> None:
    harness.publish(200)
    async with connect(harness.url) as ws:
        await request(ws, "subscribe", {"channel": "trades", "symbol": "BTC-USD"})
        snapshot = await recv_json(ws)
        assert (snapshot["channel"], snapshot["type"]) == ("trades", "snapshot")
        started = time.monotonic()
        msg = await recv_json(ws, timeout_s=5.0)
        waited = time.monotonic() - started
        assert msg["channel"] == "heartbeat"
        assert msg["seqs"] == {"BTC-USD": harness.feed.seq}
        assert 0.8 <= waited <= 2.5
        assert abs(msg["ts"] - time.time() * 1000) < 5000


def small_rcvbuf_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def drain_until_closed_or_idle(ws: ClientConnection, mirror: BookMirror | None,
                                     timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Read (checking the book chain) until closed or idle (a heartbeat: nothing queued)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = await recv_json(ws, timeout_s=2.5)
        except (TimeoutError, ConnectionClosed):
            break
        if msg["channel"] == "heartbeat":
            break
        got.append(msg)
        if mirror is not None and msg["channel"] == "book":
            mirror.apply(msg)
    return got


async def test_slow_book_subscriber_gets_a_fresh_snapshot_others_unaffected() -> None:
    h = await start(Flow(BTC, 3000, seed=12), queue_limit=20, write_limit=1024, sndbuf=4096)
    try:
        h.publish(1000, per_batch=10)
        async with connect(h.url) as fast, \
                connect(h.url, sock=small_rcvbuf_socket(h.server.port), max_queue=1) as slow:
            mirrors = {}
            for ws, name in ((fast, "fast"), (slow, "slow")):
                await request(ws, "subscribe", {"channel": "book", "symbol": "BTC-USD",
                                                "depth": 500})
                mirrors[name] = BookMirror(500)
                mirrors[name].apply(await recv_json(ws))
            slow.transport.pause_reading()
            # Publish in steps, letting the fast reader keep up (as a live feed would),
            # until the slow one overflowed once, then a little more (under the limit).
            steps_after = 0
            for _ in range(100):
                h.publish(25, per_batch=5)
                while mirrors["fast"].seq != h.feed.book_seq[500]:
                    mirrors["fast"].apply(await recv_json(fast))
                if h.server.resyncs:
                    steps_after += 1
                    if steps_after == 3:
                        break
            assert h.server.resyncs == 1 and h.server.slow_closes == 0
            assert mirrors["fast"].top("buy") == h.top("buy", 500)
            slow.transport.resume_reading()
            got = await drain_until_closed_or_idle(slow, mirrors["slow"])
            assert any(m["type"] == "snapshot" for m in got if m["channel"] == "book")
            assert mirrors["slow"].top("buy") == h.top("buy", 500)
            assert mirrors["slow"].top("sell") == h.top("sell", 500)
            assert slow.close_code is None
    finally:
        await h.server.close()


async def test_slow_candles_subscriber_gets_fresh_candle_snapshots() -> None:
    """Candles, like the book, resync a slow consumer: its queued updates are dropped and a
    fresh snapshot of each interval it follows replaces them, from which updates go on."""
    h = await start(Flow(BTC, 4000, seed=15), queue_limit=20, write_limit=1024, sndbuf=4096)
    try:
        h.publish(200, per_batch=3)
        async with connect(h.url, sock=small_rcvbuf_socket(h.server.port), max_queue=1) as slow:
            for interval in ("1m", "1d"):
                await request(slow, "subscribe", {"channel": "candles", "symbol": "BTC-USD",
                                                  "interval": interval})
                assert (await recv_json(slow))["type"] == "snapshot"
            slow.transport.pause_reading()
            for _ in range(400):
                h.publish(5)
                await asyncio.sleep(0)
                if h.server.resyncs:
                    break
            assert h.server.resyncs == 1 and h.server.slow_closes == 0
            h.publish(30)
            slow.transport.resume_reading()
            got = await drain_until_closed_or_idle(slow, None)
            assert slow.close_code is None
            for interval in ("1m", "1d"):
                msgs = [m for m in got if m["channel"] == "candles" and m["interval"] == interval]
                last_snapshot = max(i for i, m in enumerate(msgs) if m["type"] == "snapshot")
                candles = {c["open_time"]: c for c in msgs[last_snapshot]["data"]}
                for m in msgs[last_snapshot + 1:]:
                    candles.update((c["open_time"], c) for c in m["data"])
                expected = json.loads(h.feed.candles_snapshot(interval))["data"]
                assert [candles[k] for k in sorted(candles)] == expected and expected
    finally:
        await h.server.close()


async def test_slow_trades_subscriber_is_closed_1008_and_repeat_offender_too() -> None:
    h = await start(Flow(BTC, 3000, seed=13), queue_limit=20, write_limit=1024, sndbuf=4096,
                    resync_window_s=60.0)
    try:
        h.publish(300, per_batch=10)
        async with connect(h.url, sock=small_rcvbuf_socket(h.server.port), max_queue=1) as trader, \
                connect(h.url, sock=small_rcvbuf_socket(h.server.port), max_queue=1) as booker:
            await request(trader, "subscribe", {"channel": "trades", "symbol": "BTC-USD"})
            await request(booker, "subscribe", {"channel": "book", "symbol": "BTC-USD",
                                                "depth": 100})
            trader.transport.pause_reading()
            booker.transport.pause_reading()
            for _ in range(200):
                h.publish(10)
                await asyncio.sleep(0)
                if h.server.slow_closes >= 2:
                    break
            assert h.server.slow_closes == 2 and h.server.resyncs >= 1
            trader.transport.resume_reading()
            booker.transport.resume_reading()
            await drain_until_closed_or_idle(trader, None)
            await drain_until_closed_or_idle(booker, None)
            assert (trader.close_code, trader.close_reason) == (1008, "slow consumer")
            assert (booker.close_code, booker.close_reason) == (1008, "slow consumer")
    finally:
        await h.server.close()


# -- hostile input: every frame gets one reply, the connection stays open -------------------


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records that carry a traceback (or a "connection handler failed" from websockets)."""
    return [r for r in caplog.records
            if r.exc_info is not None or "Traceback" in r.getMessage()
            or "handler failed" in r.getMessage()]


DEEP_FRAMES = [
    '{"a":' * 1000 + "1" + "}" * 1000,  # 6 KB: 1,000 nested objects
    '{"id": 1, "method": "ping", "extra": ' + '{"a":' * 1000 + "1" + "}" * 1000 + "}",
    '{"id": 2, "method": "ping", "extra": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"id": 3, "method": "subscribe", "params": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"id": 4, "method": "ping", "params": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"id": 5, "method": "markets", "params": ' + '{"a":' * 1000 + "1" + "}" * 1000 + "}",
    '{"id": 6, "method": "subscribe", "params": {"channel": "book", "symbol": "BTC-USD", '
    '"depth": ' + "[" * 1000 + "]" * 1000 + "}}",
    '{"id": ' + "[" * 1000 + "]" * 1000 + ', "method": "ping"}',
    '{"method": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
    "[" * 30_000 + "]" * 30_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
]


async def test_deeply_nested_frames_get_bad_request_and_no_traceback(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with connect(harness.url) as ws:
        for frame in DEEP_FRAMES:
            assert len(frame) <= 64 * 1024
            await ws.send(frame)
            reply = await recv_json(ws)
            assert reply["error"]["code"] == errors.BAD_REQUEST, (frame[:60], reply)
            assert set(reply["error"]) == {"code", "message"}
            assert len(reply["error"]["message"]) < 300
        assert "result" in await request(ws, "ping", request_id="after")
        assert ws.close_code is None
    assert not tracebacks(caplog)
    assert harness.server.internal_errors == 0


async def test_an_unexpected_exception_is_internal_logged_once_never_1011(
        harness: Harness, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection in-process: the request parser breaks on frames that say "boom"."""
    import marketdata.server as server_module

    real = server_module.parse_request

    def breaking(frame: str | bytes, symbols: frozenset[str]) -> Any:
        if isinstance(frame, str) and "boom" in frame:
            raise RuntimeError("boom: a bug in the parser")
        return real(frame, symbols)

    monkeypatch.setattr(server_module, "parse_request", breaking)
    async with connect(harness.url) as ws:
        await ws.send(json.dumps({"id": 7, "method": "ping", "params": {"boom": 1}}))
        assert await recv_json(ws) == {"id": 7, "error": {
            "code": errors.INTERNAL, "message": "internal error"}}
        await ws.send('{"boom" no json')
        assert await recv_json(ws) == {"id": None, "error": {
            "code": errors.INTERNAL, "message": "internal error"}}
        assert "result" in await request(ws, "ping", request_id=8)
        assert ws.close_code is None
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 2 and all(r.name == "streamex.marketdata" for r in logged)
    assert "boom" not in json.dumps([r.getMessage() for r in logged])  # the message, not the bug
    assert harness.server.internal_errors == 2


async def test_requests_are_rate_limited_per_connection_with_a_retry_hint() -> None:
    h = await start(Flow(BTC, 10, seed=14), request_rate=2.0, request_burst=5)
    try:
        async with connect(h.url) as ws, connect(h.url) as other:
            for i in range(8):  # pipelined: one burst
                await ws.send(json.dumps({"id": i, "method": "ping"}))
            replies = [await recv_json(ws) for _ in range(8)]
            assert [r["id"] for r in replies] == list(range(8))
            assert all("result" in r for r in replies[:5])
            for r in replies[5:]:
                error = r["error"]
                assert error["code"] == errors.RATE_LIMITED
                assert 0 < error["retry_after_ms"] <= 500
                assert "limit 2/s, burst 5 per connection" in error["message"]
                assert f"retry in {error['retry_after_ms'] / 1000:.3f} s" in error["message"]
            await ws.send("junk")  # any frame counts, and the id is echoed when readable
            assert (await recv_json(ws))["error"]["code"] == errors.RATE_LIMITED
            assert "result" in await request(other, "ping")  # per connection
            await asyncio.sleep(replies[-1]["error"]["retry_after_ms"] / 1000 + 0.1)
            assert "result" in await request(ws, "ping", request_id=99)
            assert ws.close_code is None
    finally:
        await h.server.close()


async def test_a_burst_of_5000_pings_hits_the_default_limit(harness: Harness) -> None:
    async with connect(harness.url, max_queue=None) as ws:
        results = limited = 0
        started = time.monotonic()
        for start_id in range(0, 5000, 100):
            for i in range(start_id, start_id + 100):
                await ws.send(json.dumps({"id": i, "method": "ping"}))
            for i in range(start_id, start_id + 100):
                reply = await recv_json(ws)
                assert reply["id"] == i
                if "result" in reply:
                    results += 1
                else:
                    assert reply["error"]["code"] == errors.RATE_LIMITED
                    assert reply["error"]["retry_after_ms"] >= 1
                    limited += 1
        elapsed = time.monotonic() - started
        # The defaults: 2000 at once, then 1000/s (the bucket refilled while this ran).
        assert 2000 <= results <= 2000 + 1000 * elapsed + 1
        assert limited == 5000 - results and (limited > 0 or elapsed > 2.9)
        assert ws.close_code is None

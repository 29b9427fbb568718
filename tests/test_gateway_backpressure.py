"""A client that sends faster than it reads is slowed down, not disconnected; replies
are batched into one socket write; only a peer that reads nothing for long is closed."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import Iterable

import pytest
from gateway_helpers import TIMEOUT_S, make_config, running_gateway
from prometheus_client.parser import text_string_to_metric_families
from timing import wait_until_async
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from contract.settings import Config
from gateway.session import Session
from gateway.ws_send import send_texts


def fast_config() -> Config:
    """No per-connection rate limit: the test floods one connection on purpose."""
    return make_config(connection_rate=1e9, connection_burst=10**9)


async def test_send_texts_delivers_each_frame_as_a_text_message_in_order() -> None:
    frames = [json.dumps({"i": i, "pad": "x" * (i % 300)}).encode() for i in range(500)]
    writes: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        transport = ws.transport
        original = transport.writelines

        def counting(data: Iterable[bytes | bytearray | memoryview]) -> None:
            chunks = list(data)
            writes.append(len(chunks))
            original(chunks)

        transport.writelines = counting  # type: ignore[method-assign,assignment]
        await send_texts(ws, frames)
        await send_texts(ws, [])
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as client:
            got = [await asyncio.wait_for(client.recv(), TIMEOUT_S) for _ in frames]
    assert got == [f.decode() for f in frames]  # str: they arrived as text messages
    assert len(writes) == 1  # the whole batch in one transport write


async def test_a_client_that_does_not_read_is_slowed_down_and_loses_no_reply(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Session, "outbox_high", 50)
    monkeypatch.setattr(Session, "outbox_low", 10)
    pauses = 0
    original = Session._backpressure

    async def counting(self: Session) -> None:
        nonlocal pauses
        pauses += 1
        await original(self)

    monkeypatch.setattr(Session, "_backpressure", counting)
    count = 20_000
    async with running_gateway(fast_config(), redis_url) as (_, url):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
        sock.setblocking(False)
        async with connect(url, sock=sock, max_queue=None, max_size=None) as ws:
            ws.transport.pause_reading()
            for i in range(count):  # ~7 MB of replies: more than the socket buffers hold
                await ws.send(json.dumps({"id": i, "method": "markets"}))
            await wait_until_async(lambda: pauses > 0, what="the gateway to stop reading")
            ws.transport.resume_reading()
            async with asyncio.timeout(TIMEOUT_S * 2):
                ids = [json.loads(await ws.recv())["id"] for _ in range(count)]
            assert ids == list(range(count))
            assert pauses > 0  # reading requests stopped while replies waited
            await ws.send(json.dumps({"id": "last", "method": "ping"}))
            async with asyncio.timeout(TIMEOUT_S):
                assert json.loads(await ws.recv())["id"] == "last"


async def slow_closes_exported(metrics_url: str) -> float:
    """``streamex_gateway_slow_closes_total`` as the gateway's /metrics serves it."""
    def scrape() -> str:
        with urllib.request.urlopen(metrics_url, timeout=TIMEOUT_S) as reply:
            return str(reply.read().decode())

    for family in text_string_to_metric_families(await asyncio.to_thread(scrape)):
        for sample in family.samples:
            if sample.name == "streamex_gateway_slow_closes_total":
                return float(sample.value)
    raise AssertionError("streamex_gateway_slow_closes_total is not exported")


async def test_a_peer_that_reads_nothing_for_long_is_closed_1008(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Session, "outbox_high", 50)
    monkeypatch.setattr(Session, "outbox_low", 10)
    monkeypatch.setattr(Session, "stall_s", 0.5)
    closing = 0
    original = Session._slow_consumer

    def counting(self: Session) -> None:
        nonlocal closing
        closing += 1
        original(self)

    monkeypatch.setattr(Session, "_slow_consumer", counting)
    async with running_gateway(fast_config(), redis_url) as (gw, url):
        assert gw.metrics_url is not None
        assert await slow_closes_exported(gw.metrics_url) == 0
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
        sock.setblocking(False)
        async with connect(url, sock=sock, max_queue=None, max_size=None,
                           ping_interval=None) as ws:
            ws.transport.pause_reading()
            for i in range(20_000):
                await ws.send(json.dumps({"id": i, "method": "markets"}))
            # Nothing read for longer than stall_s: the gateway gives up on the peer.
            await wait_until_async(lambda: closing > 0, what="the slow-consumer close")
            ws.transport.resume_reading()
            async with asyncio.timeout(TIMEOUT_S * 2):
                await ws.wait_closed()
            assert ws.close_code == 1008
            assert ws.close_reason == "slow consumer"
        # Operators see it: the close is counted once on the gateway's /metrics.
        assert await slow_closes_exported(gw.metrics_url) == 1

"""Bad input over a real websocket: each gets its error code, connections survive where
the protocol says so, and nothing invalid reaches Redis (no engine runs here)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway_helpers import (
    ALICE,
    RawClient,
    error_code,
    make_config,
    orders_entered,
    running_gateway,
)
from websockets.exceptions import ConnectionClosed

from contract.market import DEFAULT_MARKETS
from contract.signing import sign
from gateway.server import Gateway


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[tuple[Gateway, str]]:
    async with running_gateway(make_config(), redis_url) as running:
        yield running


def place(**overrides: Any) -> dict[str, Any]:
    params = {"symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "1",
              "price": "100.00"}
    params.update(overrides)
    return {"id": "p", "method": "order.place",
            "params": {k: v for k, v in params.items() if v is not ...}}


async def stream_lengths(redis_url: str) -> list[int]:
    """Order commands that reached Redis per market (its ``:in`` or the risk shard's)."""
    return [await orders_entered(redis_url, m.symbol) for m in DEFAULT_MARKETS]


async def test_ping_and_markets_need_no_logon(gateway: tuple[Gateway, str]) -> None:
    raw = await RawClient.open(gateway[1])
    before = time.time_ns() // 1_000_000
    pong = await raw.call({"id": 1, "method": "ping"})
    assert pong["id"] == 1 and pong["result"]["pong"] >= before
    markets = await raw.call({"id": "m", "method": "markets", "params": {}})
    # The configured markets: DEFAULT_MARKETS with one unit per asset (config.asset_units).
    configured = gateway[0].config.markets
    assert [m.symbol for m in configured] == [m.symbol for m in DEFAULT_MARKETS]
    assert markets == {"id": "m", "result": {"markets": [m.to_wire() for m in configured]}}
    assert all({"maker_fee", "taker_fee"} <= m.keys() for m in markets["result"]["markets"])
    await raw.close()


async def test_order_entry_before_logon_is_unauthenticated(gateway: tuple[Gateway, str]) -> None:
    raw = await RawClient.open(gateway[1])
    for method, params in [
        ("order.place", place()["params"]),
        ("order.cancel", {"symbol": "BTC-USD", "order_id": "1-0"}),
        ("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "qty": "1"}),
        ("order.cancel_all", {}),
        ("orders.open", {}),
    ]:
        reply = await raw.call({"id": method, "method": method, "params": params})
        assert reply["id"] == method and error_code(reply) == "UNAUTHENTICATED", reply
        assert "log on" in reply["error"]["message"]
    assert "result" in await raw.call({"id": 2, "method": "ping"})
    await raw.close()


async def test_bad_logons(gateway: tuple[Gateway, str]) -> None:
    raw = await RawClient.open(gateway[1])
    now = time.time_ns() // 1_000_000
    key, secret = ALICE.api_key, ALICE.secret

    def logon(ts: int, signature: str, api_key: str = key) -> dict[str, Any]:
        return {"id": "L", "method": "logon",
                "params": {"api_key": api_key, "timestamp": ts, "signature": signature}}

    for frame, reason in [
        (logon(now - 31_000, sign(secret, now - 31_000, key)),  # a replayed, stale logon
         "TIMESTAMP_OUT_OF_WINDOW"),
        (logon(now + 31_000, sign(secret, now + 31_000, key)), "TIMESTAMP_OUT_OF_WINDOW"),
        (logon(now, sign("not-the-secret", now, key)), "BAD_SIGNATURE"),
        (logon(now, sign(secret, now - 1, key)), "BAD_SIGNATURE"),
        (logon(now, "zz" * 32), "BAD_SIGNATURE"),
        (logon(now, sign(secret, now, "nobody"), "nobody"), "UNKNOWN_KEY"),
        (logon(now, "\u0000\u202e" * 10), "BAD_SIGNATURE"),
    ]:
        before = time.time_ns() // 1_000_000
        reply = await raw.call(frame)
        assert reply["id"] == "L" and error_code(reply) == "UNAUTHENTICATED", reply
        error = reply["error"]
        assert set(error) == {"code", "message", "reason", "server_time"}
        assert error["reason"] == reason and reason in error["message"]
        assert before <= error["server_time"] <= time.time_ns() // 1_000_000
        assert f"server_time {error['server_time']}" in error["message"]
        assert secret not in json.dumps(reply)
    reply = await raw.call({"id": "L", "method": "logon", "params": {
        "api_key": key, "timestamp": str(now), "signature": sign(secret, now, key)}})
    assert error_code(reply) == "BAD_REQUEST" and "params.timestamp" in reply["error"]["message"]
    # Still not logged on, then a good logon works; a second one is refused.
    assert error_code(await raw.call({"id": 1, "method": "orders.open"})) == "UNAUTHENTICATED"
    assert (await raw.logon(ALICE))["result"]["account"] == "alice"
    again = await raw.logon(ALICE)
    assert error_code(again) == "BAD_REQUEST" and "already logged on" in again["error"]["message"]
    assert (await raw.call({"id": 3, "method": "orders.open"}))["result"] == {"orders": []}
    await raw.close()


async def test_malformed_frames_get_errors_and_the_connection_stays(
        gateway: tuple[Gateway, str], redis_url: str) -> None:
    raw = await RawClient.open(gateway[1])
    await raw.logon(ALICE)
    cases: list[tuple[str | bytes, str, Any]] = [
        ("not json at all", "BAD_REQUEST", None),
        ("[1, 2, 3]", "BAD_REQUEST", None),
        ('"just a string"', "BAD_REQUEST", None),
        ("{}", "BAD_REQUEST", None),
        ("{\"id\": 1", "BAD_REQUEST", None),
        (b'{"id": 1, "method": "ping"}', "BAD_REQUEST", None),
        (b"\x00\xff\xfe\x80", "BAD_REQUEST", None),
        ('{"id": true, "method": "ping"}', "BAD_REQUEST", None),
        (json.dumps({"id": 10**30, "method": "ping"}), "BAD_REQUEST", None),
        (json.dumps({"id": "i" * 1000, "method": "ping"}), "BAD_REQUEST", None),
        ('{"id": 4, "method": "ping", "params": {"x": 1}}', "BAD_REQUEST", 4),
        ('{"id": 5, "method": "ping", "oops": 1}', "BAD_REQUEST", 5),
        ('{"id": 6, "method": "order.explode"}', "UNKNOWN_METHOD", 6),
        ('{"id": 7}', "BAD_REQUEST", 7),
        ("\u2603\ud7ff\U0001f4a5 {\"id\": 8}", "BAD_REQUEST", None),
        ('{"id": "\u00e9\u4e2d\U0001f600", "method": "nope"}', "UNKNOWN_METHOD",
         "\u00e9\u4e2d\U0001f600"),
        ("[" * 30_000 + "]" * 30_000, "BAD_REQUEST", None),
        (json.dumps(place(qty=1)), "BAD_REQUEST", "p"),
        (json.dumps(place(qty=10**100)), "BAD_REQUEST", "p"),
        (json.dumps(place(qty="9" * 60_000)), "INVALID_QTY", "p"),
        (json.dumps(place(symbol="S" * 60_000)), "UNKNOWN_SYMBOL", "p"),
        (json.dumps(place(qty="0")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="-1")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="NaN")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="1e9999")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="5000")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="0.00005")), "INVALID_QTY", "p"),
        (json.dumps(place(qty="1.00001")), "INVALID_LOT", "p"),
        (json.dumps(place(price="0")), "INVALID_PRICE", "p"),
        (json.dumps(place(price="Infinity")), "INVALID_PRICE", "p"),
        (json.dumps(place(price="2000000")), "INVALID_PRICE", "p"),
        (json.dumps(place(price="100.001")), "INVALID_TICK", "p"),
        (json.dumps(place(symbol="DOGE-USD")), "UNKNOWN_SYMBOL", "p"),
        (json.dumps(place(side="up")), "BAD_REQUEST", "p"),
        (json.dumps(place(type="stop")), "BAD_REQUEST", "p"),
        (json.dumps(place(tif="DAY")), "BAD_REQUEST", "p"),
        (json.dumps(place(stp="never")), "BAD_REQUEST", "p"),
        (json.dumps(place(price=...)), "BAD_REQUEST", "p"),
        (json.dumps(place(type="market")), "BAD_REQUEST", "p"),
        (json.dumps(place(type="market", price=..., post_only=True)), "BAD_REQUEST", "p"),
        (json.dumps(place(post_only=True, tif="IOC")), "BAD_REQUEST", "p"),
        (json.dumps(place(client_order_id="no spaces")), "BAD_REQUEST", "p"),
        (json.dumps(place(client_order_id="x" * 37)), "BAD_REQUEST", "p"),
        (json.dumps(place(client_order_id="abc\n")), "BAD_REQUEST", "p"),
        (json.dumps(place(client_order_id="x" * 36 + "\n")), "BAD_REQUEST", "p"),
        (json.dumps({"id": 14, "method": "order.cancel",
                     "params": {"symbol": "BTC-USD", "client_order_id": "abc\n"}}),
         "BAD_REQUEST", 14),
        (json.dumps({"id": 15, "method": "order.amend",
                     "params": {"symbol": "BTC-USD", "client_order_id": "abc\n", "qty": "1"}}),
         "BAD_REQUEST", 15),
        (json.dumps(place(leverage="100x")), "BAD_REQUEST", "p"),
        (json.dumps({"id": 9, "method": "order.cancel",
                     "params": {"symbol": "BTC-USD", "order_id": "guess"}}),
         "UNKNOWN_ORDER", 9),
        (json.dumps({"id": 10, "method": "order.cancel", "params": {"symbol": "BTC-USD"}}),
         "BAD_REQUEST", 10),
        (json.dumps({"id": 11, "method": "order.amend",
                     "params": {"symbol": "BTC-USD", "order_id": "1-0"}}), "BAD_REQUEST", 11),
        (json.dumps({"id": 12, "method": "order.amend",
                     "params": {"symbol": "BTC-USD", "order_id": "1-0", "price": "1.005"}}),
         "INVALID_TICK", 12),
        (json.dumps({"id": 13, "method": "orders.open", "params": {"symbol": "X-Y"}}),
         "UNKNOWN_SYMBOL", 13),
    ]
    for frame, code, request_id in cases:
        reply = await raw.call(frame)
        assert error_code(reply) == code, (frame[:80], reply)
        assert reply["id"] == request_id, (frame[:80], reply)
        message = reply["error"]["message"]
        assert message and len(message) < 300
        assert "Traceback" not in message and "msgspec" not in message
    assert "result" in await raw.call({"id": "still", "method": "ping"})
    assert await stream_lengths(redis_url) == [0, 0]  # nothing reached Redis
    await raw.close()


async def test_oversized_frame_closes_with_1009_others_unaffected(
        gateway: tuple[Gateway, str]) -> None:
    url = gateway[1]
    victim, bystander = await RawClient.open(url), await RawClient.open(url)
    await bystander.logon(ALICE)
    # Just under the limit: answered.
    near = json.dumps({"id": 1, "method": "ping", "params": {"pad": "x" * 65_000}})
    assert len(near) <= 65_536
    assert error_code(await victim.call(near)) == "BAD_REQUEST"
    await victim.send("x" * (1 << 20))  # 1 MB
    with pytest.raises(ConnectionClosed) as caught:
        await victim.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
    assert "result" in await bystander.call({"id": 2, "method": "ping"})
    assert (await bystander.call({"id": 3, "method": "orders.open"}))["result"] == {"orders": []}
    await bystander.close()


async def test_a_flood_of_bad_logons_counts_against_the_connection_limit(
        redis_url: str) -> None:
    async with running_gateway(make_config(connection_rate=0.01, connection_burst=5),
                               redis_url) as (_, url):
        raw = await RawClient.open(url)
        now = time.time_ns() // 1_000_000
        frame = json.dumps({"id": "L", "method": "logon", "params": {
            "api_key": ALICE.api_key, "timestamp": now, "signature": "00" * 32}})
        for _ in range(10):
            await raw.send(frame)  # pipelined: one burst
        replies = [await raw.recv() for _ in range(10)]
        assert [error_code(r) for r in replies] == ["UNAUTHENTICATED"] * 5 + ["RATE_LIMITED"] * 5
        assert all(r["id"] == "L" for r in replies)
        limited = replies[-1]["error"]
        assert limited["retry_after_ms"] > 1000  # 0.01/s: about 100 s for the next token
        assert "per connection" in limited["message"]
        # Even a good logon now waits for the bucket.
        assert error_code(await raw.logon(ALICE)) == "RATE_LIMITED"
        await raw.close()

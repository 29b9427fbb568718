"""Disconnects, limits, overload and a gateway crash, with real processes."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from gateway_helpers import (
    ALICE,
    BOB,
    CAROL,
    RISK_ENABLED,
    RawClient,
    engine_process,
    error_code,
    logged_on,
    make_config,
    next_report,
    no_report,
    reports_until,
    running_gateway,
    start_gateway_process,
    wait_engine_ready,
    write_config,
)
from msgspec.structs import replace
from timing import scaled, wait_until_async
from websockets.exceptions import ConnectionClosed

from contract.errors import StreamexError
from contract.events import Report
from contract.keys import out_stream, snap_key
from contract.settings import Account, EngineConfig, RiskConfig
from contract.snapshot import decode_snapshot
from contract.streams import events_of
from streamex.client import ExecutionReport, OrderClient


async def test_cancel_on_disconnect_cancels_only_that_connections_orders(
        tmp_path: Path, redis_url: str) -> None:
    config = make_config()
    engine = engine_process(write_config(tmp_path, config), redis_url,
                            tmp_path / "engine.log").start()
    try:
        await wait_engine_ready(redis_url)
        async with running_gateway(config, redis_url) as (_, url):
            watcher = await logged_on(url, ALICE)
            keeper = await logged_on(url, ALICE)  # no cancel_on_disconnect
            kept = await keeper.place("BTC-USD", "buy", "limit", "1", "90.00")
            leaver = await logged_on(url, ALICE, cancel_on_disconnect=True)
            doomed = [await leaver.place("BTC-USD", "buy", "limit", "1", "91.00"),
                      await leaver.place("ETH-USD", "sell", "limit", "1", "500.00")]
            # Closed at once (nothing to buy); by budget under the risk stage, else by qty.
            filled = await leaver.place("BTC-USD", "buy", "market",
                                        **({"quote_qty": "1000000"} if RISK_ENABLED
                                           else {"qty": "1"}))
            await reports_until(watcher, lambda got: len(got) == 5)
            # An order in flight when the connection drops is cancelled too.
            raw = await RawClient.open(url)
            await raw.logon(ALICE, cancel_on_disconnect=True)
            await raw.send(json.dumps({"id": 1, "method": "order.place", "params": {
                "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "2",
                "price": "92.00"}}))
            await raw.close()
            await leaver.close()

            reports = await reports_until(
                watcher, lambda got: sum(r.exec_type == "canceled" for r in got) == 3)
            # Order ids are entry ids of each market's stream: unique per symbol only.
            canceled = {(r.symbol, r.order_id): r for r in reports if r.exec_type == "canceled"}
            assert {r.reason for r in canceled.values()} == {"CANCEL_ON_DISCONNECT"}
            assert {(d.symbol, d.order_id) for d in doomed} < set(canceled)
            assert (filled.symbol, filled.order_id) not in canceled
            assert (kept.symbol, kept.order_id) not in canceled
            [open_order] = await watcher.open_orders()
            assert open_order.order_id == kept.order_id
            await no_report(watcher, 0.2)
            await watcher.close()
            await keeper.close()
    finally:
        engine.stop()


async def test_connection_and_account_rate_limits(redis_url: str) -> None:
    config = make_config(connection_rate=0.01, connection_burst=6, account_rate=0.01,
                         account_burst=5)
    async with running_gateway(config, redis_url) as (_, url):
        raw = await RawClient.open(url)
        replies = [await raw.call({"id": i, "method": "ping"}) for i in range(7)]
        assert all("result" in r for r in replies[:6])
        assert error_code(replies[6]) == "RATE_LIMITED" and replies[6]["id"] == 6
        error = replies[6]["error"]
        assert set(error) == {"code", "message", "retry_after_ms"}
        # 0.01 tokens/s: the next one is about 100 s away (less what has trickled in).
        assert 90_000 < error["retry_after_ms"] <= 100_000
        assert error["message"] == (
            "too many requests on this connection (limit 0.01/s, burst 6 per connection); "
            f"retry in {error['retry_after_ms'] / 1000:.3f} s")
        assert error_code(await raw.call("junk")) == "RATE_LIMITED"
        await raw.close()

        # The account's bucket (order-entry methods) is shared by its connections.
        first, second = await logged_on(url, BOB), await logged_on(url, BOB)
        for client in (first, second, first, second, first):
            await client.place("BTC-USD", "buy", "limit", "1", "1.00")
        with pytest.raises(StreamexError) as caught:
            await second.cancel_all()  # the account's 6th order-entry request
        assert caught.value.code == "RATE_LIMITED" and "account" in caught.value.message
        assert "(limit 0.01/s, burst 5 per account); retry in " in caught.value.message
        # The connection's bucket counts every request: first has spent 4 of its 6.
        await first.ping()
        await first.ping()
        with pytest.raises(StreamexError) as caught:
            await first.ping()
        assert caught.value.code == "RATE_LIMITED" and "connection" in caught.value.message
        other = await logged_on(url, CAROL)  # other accounts are not affected
        await other.place("BTC-USD", "buy", "limit", "1", "1.00")
        for client in (first, second, other):
            await client.close()


async def test_overloaded_when_the_engine_is_behind(tmp_path: Path, redis_url: str) -> None:
    """Without the risk stage the backlog is each market's own."""
    config = replace(make_config(max_backlog=3), risk=RiskConfig(enabled=False))
    async with running_gateway(config, redis_url, backlog_refresh_s=0.05) as (_, url):
        alice = await logged_on(url, ALICE)
        placed = [await alice.place("BTC-USD", "buy", "limit", "1", "1.00") for _ in range(3)]
        with pytest.raises(StreamexError) as caught:
            await alice.place("BTC-USD", "buy", "limit", "1", "1.00")
        assert caught.value.code == "OVERLOADED" and "BTC-USD" in caught.value.message
        with pytest.raises(StreamexError) as caught:
            await alice.amend("BTC-USD", order_id=placed[0].order_id, qty="2")
        assert caught.value.code == "OVERLOADED"
        await alice.cancel("BTC-USD", order_id=placed[0].order_id)  # cancels always pass
        await alice.place("ETH-USD", "buy", "limit", "1", "1.00")  # other markets too

        engine = engine_process(write_config(tmp_path, config), redis_url,
                                tmp_path / "engine.log").start()
        try:
            await reports_until(alice, lambda got: len(got) == 5)  # 4 new + 1 canceled
            for _ in range(200):  # the backlog drains; admission reopens
                try:
                    await alice.place("BTC-USD", "buy", "limit", "1", "1.00")
                    break
                except StreamexError as exc:
                    assert exc.code == "OVERLOADED"
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("still OVERLOADED after the engine caught up")
            assert (await next_report(alice)).exec_type == "new"
        finally:
            engine.stop()
        await alice.close()


async def test_overloaded_when_the_risk_engine_is_behind(tmp_path: Path,
                                                          redis_url: str) -> None:
    """Under the risk stage an order also waits in its account's shard: when that input is
    full, every market refuses new orders (cancels still pass), until it drains."""
    config = make_config(risk=True, max_backlog=12)  # the 9 initial deposits + 3 orders
    async with running_gateway(config, redis_url, backlog_refresh_s=0.05) as (_, url):
        alice = await logged_on(url, ALICE)
        placed = [await alice.place("BTC-USD", "buy", "limit", "1", "1.00") for _ in range(3)]
        for symbol in ("BTC-USD", "ETH-USD"):
            with pytest.raises(StreamexError) as caught:
                await alice.place(symbol, "buy", "limit", "1", "1.00")
            assert caught.value.code == "OVERLOADED" and symbol in caught.value.message
        await alice.cancel("BTC-USD", order_id=placed[0].order_id)  # cancels always pass
        engine = engine_process(write_config(tmp_path, config), redis_url,
                                tmp_path / "engine.log").start()
        try:
            await reports_until(alice, lambda got: len(got) == 4)  # 3 new + 1 canceled
            for _ in range(200):
                try:
                    await alice.place("ETH-USD", "buy", "limit", "1", "1.00")
                    break
                except StreamexError as exc:
                    assert exc.code == "OVERLOADED"
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("still OVERLOADED after the risk engine caught up")
            assert (await next_report(alice)).exec_type == "new"
        finally:
            engine.stop()
        await alice.close()


async def _trade_until_killed(url: str, account: Account, side: str, stop: asyncio.Event,
                              received: dict[str, str], unknown: set[str]) -> None:
    """Place resting orders back to back until the connection dies; record outcomes."""
    client = await logged_on(url, account)
    rng = random.Random(account.id)
    n = 0
    try:
        while not stop.is_set():
            pending = []
            for _ in range(5):
                n += 1
                coid = f"{account.id}-{n}"
                price = f"{rng.randint(50, 90) if side == 'buy' else rng.randint(110, 150)}.00"
                pending.append((coid, asyncio.ensure_future(
                    client.place("BTC-USD", side, "limit", "0.01", price,  # type: ignore[arg-type]
                                 client_order_id=coid))))
            for coid, future in pending:
                try:
                    received[coid] = (await future).order_id
                except ConnectionClosed:
                    unknown.add(coid)
    except ConnectionClosed:
        pass
    finally:
        await client.close()


async def test_gateway_kill_9_loses_nothing_received(tmp_path: Path, redis_url: str) -> None:
    # Frequent snapshots: the restarted gateway rebuilds its view from one plus the tail.
    config = make_config(EngineConfig(snapshot_every=40))
    config_path = write_config(tmp_path, config)
    engine = engine_process(config_path, redis_url, tmp_path / "engine.log").start()
    log_path = tmp_path / "gateway.log"
    gateway, url = await start_gateway_process(config_path, redis_url, log_path)
    try:
        await wait_engine_ready(redis_url)
        received: dict[str, str] = {}
        unknown: set[str] = set()
        stop = asyncio.Event()
        traders = [asyncio.create_task(_trade_until_killed(url, account, side, stop, received,
                                                           unknown))
                   for account, side in ((ALICE, "buy"), (BOB, "sell"), (CAROL, "buy"))]
        # Let orders flow, then crash the gateway mid-stream.
        await wait_until_async(lambda: len(received) >= 150, what="150 orders received")
        gateway.kill()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*traders), scaled(10))

        client = aioredis.Redis.from_url(redis_url)
        # The restarted gateway must rebuild from a snapshot plus the tail: wait for the
        # engine to have written one (it may lag behind the XADDs on a loaded machine,
        # and reading the key before that was a way for this test to fail).
        raw = await wait_until_async(lambda: client.get(snap_key("BTC-USD")),
                                     what="the engine's first snapshot")
        snap = decode_snapshot(raw)
        assert snap.orders and snap.last_out_id != "0-0"
        gateway, url = await start_gateway_process(config_path, redis_url, log_path)
        clients = {a.id: await logged_on(url, a) for a in (ALICE, BOB, CAROL)}
        expected = {coid: order_id for coid, order_id in received.items()}
        # Resync: every received order is open, exactly as placed; nothing unasked-for.
        async def open_now() -> dict[str, ExecutionReport]:
            return {o.client_order_id or "": o for c in clients.values()
                    for o in await c.open_orders("BTC-USD")}

        async def all_open() -> bool:
            return expected.keys() <= (await open_now()).keys()

        await wait_until_async(all_open, what="every received order open after the restart")
        opened = await open_now()
        assert {coid: o.order_id for coid, o in opened.items() if coid in expected} == expected
        assert opened.keys() <= expected.keys() | unknown
        assert all(o.qty == "0.0100" and o.leaves_qty == "0.0100" for o in opened.values())

        # Applied exactly once: one "new" report per order in the event stream.
        news: Counter[str] = Counter()
        for _, fields in await client.xrange(out_stream("BTC-USD")):
            news.update(e.order_id for e in events_of(fields)
                        if isinstance(e, Report) and e.exec_type == "new")
        assert all(news[order_id] == 1 for order_id in expected.values())
        assert all(count == 1 for count in news.values())

        # The new gateway serves: a fresh order gets received and its report.
        alice: OrderClient = clients["alice"]
        fresh = await alice.place("BTC-USD", "buy", "limit", "0.01", "60.00")
        assert (await next_report(alice)).order_id == fresh.order_id
        # A graceful stop (SIGTERM) exits 0 after sending the disconnect cancels.
        careful = await logged_on(url, BOB, cancel_on_disconnect=True)
        guarded = await careful.place("BTC-USD", "sell", "limit", "0.01", "160.00")
        assert await asyncio.to_thread(gateway.stop) == 0  # the loop must answer the close

        async def canceled_on_disconnect() -> bool:
            return "CANCEL_ON_DISCONNECT" in {
                e.reason for _, fields in await client.xrange(out_stream("BTC-USD"))
                for e in events_of(fields)
                if isinstance(e, Report) and e.order_id == guarded.order_id}

        await wait_until_async(canceled_on_disconnect, what="the disconnect cancel applied")
        await client.aclose()
        for c in (*clients.values(), careful):
            await c.close()
    finally:
        gateway.kill()
        engine.stop()

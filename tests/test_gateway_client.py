"""The Python SDK (streamex.client) against the real services: typed results, errors, pushes."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest
from gateway_helpers import (
    ALICE,
    BOB,
    Process,
    engine_process,
    logged_on,
    make_config,
    next_report,
    running_gateway,
    wait_engine_ready,
    write_config,
)
from websockets.exceptions import ConnectionClosed

from contract.errors import StreamexError
from contract.market import DEFAULT_MARKETS
from streamex.client import ExecutionReport, MarketDataClient, MarketInfo, OrderClient


async def test_order_client_results_errors_and_executions(tmp_path: Path, redis_url: str
                                                          ) -> None:
    config = make_config()
    engine = engine_process(write_config(tmp_path, config), redis_url,
                            tmp_path / "engine.log").start()
    try:
        await wait_engine_ready(redis_url)
        async with running_gateway(config, redis_url) as (_, url):
            async with OrderClient.connect(url) as client:
                assert await client.ping() > 0
                markets = await client.markets()
                # The configured markets (one unit per asset, config.asset_units).
                assert markets == [MarketInfo(**m.to_wire()) for m in config.markets]
                assert [m.symbol for m in markets] == [m.symbol for m in DEFAULT_MARKETS]
                assert all("maker_fee" in m.to_wire() and "taker_fee" in m.to_wire()
                           for m in markets)
                with pytest.raises(StreamexError) as caught:
                    await client.place("BTC-USD", "buy", "limit", "1", "1.00")
                assert caught.value.code == "UNAUTHENTICATED"
                with pytest.raises(StreamexError) as caught:
                    await client.logon(ALICE.api_key, "wrong secret")
                assert caught.value.code == "UNAUTHENTICATED"
                logon = await client.logon(ALICE.api_key, ALICE.secret)
                assert logon.account == "alice" == client.account

                with pytest.raises(TypeError):
                    await client.place("BTC-USD", "buy", "limit", 0.1, "1.00")  # type: ignore[arg-type]
                with pytest.raises(StreamexError) as caught:
                    await client.place("BTC-USD", "buy", "limit", "1", "1.001")
                assert (caught.value.code, str(caught.value)) == (
                    "INVALID_TICK", "params.price: must be a multiple of 0.01")
                placed = await client.place("BTC-USD", "buy", "limit", Decimal("0.25"), 3,
                                            client_order_id="sdk-1", post_only=True,
                                            stp="cancel_maker")
                assert placed.client_order_id == "sdk-1" and placed.status == "received"
                concurrent = await asyncio.gather(*[
                    client.place("BTC-USD", "buy", "limit", "0.0001", "2.00") for _ in range(20)])
                assert len({r.order_id for r in concurrent}) == 20

                seen: list[ExecutionReport] = []
                async for report in client.executions():
                    seen.append(report)
                    if len(seen) == 21:
                        break
                assert seen[0].order_id == placed.order_id
                assert (seen[0].qty, seen[0].price) == ("0.2500", "3.00")
                assert [r.order_id for r in seen[1:]] == [r.order_id for r in concurrent]
                assert len(await client.open_orders("BTC-USD")) == 21
                await client.cancel_all("BTC-USD")
                canceled = [await next_report(client) for _ in range(21)]
                assert {r.exec_type for r in canceled} == {"canceled"}
                assert await client.open_orders() == []

            # After close: calls fail with ConnectionClosed and the iterator ends.
            with pytest.raises(ConnectionClosed):
                await client.ping()
            assert [r async for r in client.executions()] == []
    finally:
        engine.stop()


async def test_the_sdk_places_stops_gtd_orders_and_icebergs(tmp_path: Path, redis_url: str
                                                             ) -> None:
    config = make_config()
    engine = engine_process(write_config(tmp_path, config), redis_url,
                            tmp_path / "engine.log").start()
    try:
        await wait_engine_ready(redis_url)
        async with running_gateway(config, redis_url) as (_, url), \
                OrderClient.connect(url) as client:
            await client.logon(ALICE.api_key, ALICE.secret)
            with pytest.raises(TypeError):
                await client.place("BTC-USD", "sell", "stop_limit", "1", "99.00",
                                   stop_price=99.5)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await client.place("BTC-USD", "sell", "limit", "1", "99.00", tif="GTD",
                                   expire_time=True)
            with pytest.raises(StreamexError) as caught:
                await client.place("BTC-USD", "sell", "stop_limit", "1", "99.00")
            assert (caught.value.code, str(caught.value)) == (
                "INVALID_STOP_PRICE", "params.stop_price: required for a stop_limit order")
            with pytest.raises(StreamexError) as caught:
                await client.place("BTC-USD", "sell", "limit", "1", "99.00", tif="GTD")
            assert caught.value.code == "INVALID_EXPIRE_TIME"

            # No trade yet on this market: a stop sell through 99.50 waits.
            expires = time.time_ns() // 1_000_000 + 3_600_000
            placed = await client.place("BTC-USD", "sell", "stop_limit", Decimal("0.5"),
                                        "99.00", stop_price=Decimal("99.50"), tif="GTD",
                                        expire_time=expires, display_qty="0.1",
                                        client_order_id="sdk-stop")
            new = await next_report(client)
            assert (new.order_id, new.exec_type, new.status, new.type, new.tif, new.price,
                    new.stop_price, new.expire_time, new.display_qty) == (
                placed.order_id, "new", "untriggered", "stop_limit", "GTD", "99.00", "99.50",
                expires, "0.1000")
            await client.amend("BTC-USD", client_order_id="sdk-stop", stop_price="98.00")
            replaced = await next_report(client)
            assert (replaced.exec_type, replaced.status, replaced.stop_price) == (
                "replaced", "untriggered", "98.00")
            [listed] = await client.open_orders("BTC-USD")
            assert (listed.exec_type, listed.status, listed.stop_price, listed.display_qty) == (
                "status", "untriggered", "98.00", "0.1000")
            await client.cancel("BTC-USD", order_id=placed.order_id)
            canceled = await next_report(client)
            assert (canceled.exec_type, canceled.stop_price) == ("canceled", "98.00")
            assert await client.open_orders() == []
    finally:
        engine.stop()


async def test_market_data_client_sees_the_book_change(tmp_path: Path, redis_url: str) -> None:
    config = make_config()
    config_path = write_config(tmp_path, config)
    engine = engine_process(config_path, redis_url, tmp_path / "engine.log").start()
    feed = Process(["marketdata", "--config", str(config_path), "--redis-url", redis_url,
                    "--port", "0"], tmp_path / "marketdata.log").start()
    try:
        md_url = await asyncio.to_thread(feed.wait_listening, "marketdata")
        await wait_engine_ready(redis_url)
        async with running_gateway(config, redis_url) as (_, url), \
                MarketDataClient.connect(md_url) as md:
            result = await md.subscribe("book", "BTC-USD", depth=10)
            assert result["subscribed"]["channel"] == "book"
            with pytest.raises(StreamexError) as caught:
                await md.subscribe("book", "NOPE-USD")
            assert caught.value.code == "UNKNOWN_SYMBOL"
            async with asyncio.timeout(10):
                snapshot = await md.next_push()
                while snapshot.get("channel") != "book":
                    snapshot = await md.next_push()
            assert (snapshot["type"], snapshot["bids"], snapshot["asks"]) == ("snapshot", [], [])

            bob = await logged_on(url, BOB)
            await bob.place("BTC-USD", "sell", "limit", "0.5", "123.45")
            async with asyncio.timeout(10):
                async for push in md:
                    if push.get("channel") == "book" and push["type"] == "update":
                        break
            assert push["asks"] == [["123.45", "0.5000"]] and push["prev_seq"] == snapshot["seq"]
            await md.unsubscribe("book", "BTC-USD", depth=10)
            await bob.close()
    finally:
        feed.stop()
        engine.stop()


async def test_the_sdk_carries_the_error_details(redis_url: str) -> None:
    """A failed logon's reason and server time, a rate limit's retry hint, reach the caller."""
    config = make_config(connection_rate=1.0, connection_burst=2)
    async with running_gateway(config, redis_url) as (_, url), \
            OrderClient.connect(url) as client:
        with pytest.raises(StreamexError) as bad:
            await client.logon(ALICE.api_key, "not-the-secret")
        assert (bad.value.code, bad.value.reason) == ("UNAUTHENTICATED", "BAD_SIGNATURE")
        assert bad.value.server_time is not None and bad.value.retry_after_ms is None
        await client.ping()  # the second request of the burst of 2
        with pytest.raises(StreamexError) as limited:
            await client.ping()
        assert limited.value.code == "RATE_LIMITED"
        assert limited.value.retry_after_ms is not None and limited.value.retry_after_ms > 0
        assert limited.value.reason is None

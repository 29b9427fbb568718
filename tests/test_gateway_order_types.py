"""Section B through the gateway: stops, take-profits, GTD and icebergs, end to end.

Real Redis, a real engine process (and the risk stage when the suite runs with it,
the default), the gateway on a real socket, the SDK as the client; the market-data
service as a child process where the public book is checked. What a trader sees:
a stop waits ``untriggered`` (in ``orders.open``, holding its client order id),
another account's trade triggers it and its fills follow; a GTD order expires on
a market with no other traffic; an iceberg shows only its slice to the public
while its owner sees the whole order; a new gateway rebuilds all of it from the
engine's snapshot; cancel on disconnect takes untriggered stops too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from gateway_helpers import (
    ALICE,
    BOB,
    CAROL,
    RISK_ENABLED,
    Process,
    engine_process,
    logged_on,
    make_config,
    no_report,
    reports_until,
    running_gateway,
    wait_engine_ready,
    write_config,
)
from timing import TIMEOUT_S, scaled, wait_until_async

from contract.errors import (
    CANCEL_ON_DISCONNECT,
    DUPLICATE_CLIENT_ORDER_ID,
    EXPIRED,
    INVALID_EXPIRE_TIME,
    INVALID_STOP_PRICE,
    StreamexError,
)
from contract.keys import snap_key
from contract.settings import Config, EngineConfig
from contract.snapshot import decode_snapshot
from gateway.server import Gateway, wall_ms
from streamex.client import ExecutionReport, MarketDataClient, OrderClient


@pytest.fixture
def config() -> Config:
    # A snapshot after every command: a gateway started later loads the orders from it.
    return make_config(EngineConfig(snapshot_every=1))


@pytest.fixture
def engine(tmp_path: Path, config: Config, redis_url: str) -> Iterator[Process]:
    process = engine_process(write_config(tmp_path, config), redis_url,
                             tmp_path / "engine.log").start()
    yield process
    process.stop()


@pytest.fixture
async def gateway(config: Config, redis_url: str, engine: Process
                  ) -> AsyncIterator[tuple[Gateway, str]]:
    await wait_engine_ready(redis_url)
    async with running_gateway(config, redis_url) as running:
        yield running


async def report_of(client: OrderClient, order_id: str, exec_type: str,
                    timeout_s: float = TIMEOUT_S) -> tuple[ExecutionReport, list[ExecutionReport]]:
    """Read the client's reports until the order's ``exec_type`` one: (it, all read)."""
    got = await reports_until(client, lambda seen: bool(seen) and (
        seen[-1].order_id, seen[-1].exec_type) == (order_id, exec_type), timeout_s)
    return got[-1], got


def market_buy(qty: str, budget: str) -> dict[str, Any]:
    """A market(-type) buy's amount: a quote budget under the risk stage, else a qty."""
    return {"quote_qty": budget} if RISK_ENABLED else {"qty": qty}


async def test_a_stop_waits_untriggered_until_another_accounts_trade_then_fills(
        gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice, bob, carol = (await logged_on(url, ALICE), await logged_on(url, BOB),
                         await logged_on(url, CAROL))
    first = await bob.place("BTC-USD", "sell", "limit", "0.5", "101.00")
    second = await bob.place("BTC-USD", "sell", "limit", "2", "102.00")
    await reports_until(bob, lambda got: len(got) == 2)

    stop = await alice.place("BTC-USD", "buy", "stop_limit", "1", "102.00",
                             stop_price="101.00", client_order_id="stop-1")
    new, _ = await report_of(alice, stop.order_id, "new")
    assert (new.type, new.status, new.price, new.stop_price, new.qty, new.leaves_qty,
            new.cum_qty, new.tif) == (
        "stop_limit", "untriggered", "102.00", "101.00", "1.0000", "1.0000", "0.0000", "GTC")
    assert new.expire_time is msgspec.UNSET and new.display_qty is msgspec.UNSET
    [listed] = await alice.open_orders("BTC-USD")
    assert (listed.order_id, listed.exec_type, listed.status, listed.stop_price) == (
        stop.order_id, "status", "untriggered", "101.00")
    # While it waits, its client order id is taken.
    with pytest.raises(StreamexError) as duplicate:
        await alice.place("BTC-USD", "buy", "limit", "1", "90.00", client_order_id="stop-1")
    assert duplicate.value.code == DUPLICATE_CLIENT_ORDER_ID
    # A stop is not in the book: bob's asks are all a buy meets.
    await no_report(alice, 0.2)

    # Carol's buy prints at 101.00, which is the stop's trigger.
    await carol.place("BTC-USD", "buy", "limit", "0.5", "101.00")
    triggered, _ = await report_of(alice, stop.order_id, "triggered")
    assert (triggered.status, triggered.type, triggered.stop_price, triggered.leaves_qty) == (
        "new", "stop_limit", "101.00", "1.0000")
    fill, _ = await report_of(alice, stop.order_id, "trade")
    assert (fill.status, fill.last_qty, fill.last_price, fill.liquidity, fill.cum_qty,
            fill.leaves_qty) == ("filled", "1.0000", "102.00", "taker", "1.0000", "0.0000")
    assert fill.stop_price == "101.00" and fill.client_order_id == "stop-1"
    assert await alice.open_orders() == []
    # The id is free again once the order is closed.
    again = await alice.place("BTC-USD", "buy", "limit", "0.1", "90.00",
                              client_order_id="stop-1")
    await report_of(alice, again.order_id, "new")
    [rest] = await bob.open_orders("BTC-USD")
    assert (rest.order_id, rest.leaves_qty) == (second.order_id, "1.0000")
    assert first.order_id not in {o.order_id for o in await bob.open_orders()}
    for client in (alice, bob, carol):
        await client.close()


async def test_a_stop_market_buy_triggers_and_takes_the_book(
        gateway: tuple[Gateway, str]) -> None:
    """Under the risk stage a stop market buy spends a quote budget, as a market buy does."""
    _, url = gateway
    alice, bob, carol = (await logged_on(url, ALICE), await logged_on(url, BOB),
                         await logged_on(url, CAROL))
    await bob.place("ETH-USD", "sell", "limit", "1", "50.00")
    await bob.place("ETH-USD", "sell", "limit", "3", "51.00")
    await reports_until(bob, lambda got: len(got) == 2)
    stop = await alice.place("ETH-USD", "buy", "stop_market", stop_price="50.00",
                             **market_buy("2", "60"))
    new, _ = await report_of(alice, stop.order_id, "new")
    assert (new.status, new.type, new.price, new.stop_price) == (
        "untriggered", "stop_market", None, "50.00")
    # Carol's buy prints 0.5 at 50.00: the stop triggers and takes what is offered.
    await carol.place("ETH-USD", "buy", "limit", "0.5", "50.00")
    triggered, _ = await report_of(alice, stop.order_id, "triggered")
    assert triggered.status == "new"
    fills = await reports_until(alice, lambda got: bool(got) and got[-1].status in (
        "filled", "expired"))
    trades = [r for r in fills if r.exec_type == "trade"]
    assert [(t.last_qty, t.last_price) for t in trades[:1]] == [("0.500", "50.00")]
    if not RISK_ENABLED:  # 2 by qty: the rest of 50.00, then 51.00
        assert (fills[-1].status, fills[-1].cum_qty, fills[-1].avg_price) == (
            "filled", "2.000", "50.75")
    assert {r.order_id for r in fills} == {stop.order_id}
    assert await alice.open_orders() == []
    for client in (alice, bob, carol):
        await client.close()


async def test_gtd_orders_expire_on_a_quiet_market(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice = await logged_on(url, ALICE)
    expires = wall_ms() + 1_500
    resting = await alice.place("ETH-USD", "buy", "limit", "1", "10.00", tif="GTD",
                                expire_time=expires, client_order_id="gtd-1")
    stop = await alice.place("ETH-USD", "sell", "stop_market", "1", stop_price="5.00",
                             tif="GTD", expire_time=expires + 200)
    keeps = await alice.place("ETH-USD", "buy", "limit", "1", "9.00")
    got = await reports_until(alice, lambda seen: len(seen) == 3)
    assert [(r.order_id, r.status, r.tif, r.expire_time) for r in got] == [
        (resting.order_id, "new", "GTD", expires),
        (stop.order_id, "untriggered", "GTD", expires + 200),
        (keeps.order_id, "new", "GTC", msgspec.UNSET)]
    assert {o.order_id for o in await alice.open_orders()} == {
        resting.order_id, stop.order_id, keeps.order_id}

    # Nothing else happens on the market: the engine's own clock entries expire them.
    ended = await reports_until(alice, lambda seen: len(seen) == 2, scaled(10))
    assert [(r.order_id, r.exec_type, r.status, r.reason, r.leaves_qty) for r in ended] == [
        (resting.order_id, "expired", "expired", EXPIRED, "0.000"),
        (stop.order_id, "expired", "expired", EXPIRED, "0.000")]
    assert all(r.ts >= expires for r in ended)
    assert [o.order_id for o in await alice.open_orders()] == [keeps.order_id]
    # The client order id is free again.
    again = await alice.place("ETH-USD", "buy", "limit", "1", "10.00",
                              client_order_id="gtd-1")
    await report_of(alice, again.order_id, "new")
    await alice.close()


async def test_the_gateways_clock_decides_what_is_in_the_future(
        config: Config, redis_url: str, engine: Process) -> None:
    """A GTD order expiring before the gateway's clock is refused at once; one that
    reaches the engine after its time is rejected there with EXPIRED."""
    await wait_engine_ready(redis_url)
    async with running_gateway(config, redis_url, clock_ms=lambda: wall_ms() + 20_000) as (
            _, ahead_url):
        alice = await logged_on(ahead_url, ALICE)
        with pytest.raises(StreamexError) as refused:
            await alice.place("BTC-USD", "buy", "limit", "1", "10.00", tif="GTD",
                              expire_time=wall_ms() + 10_000)
        assert refused.value.code == INVALID_EXPIRE_TIME
        assert "not later than the gateway's clock" in str(refused.value)
        with pytest.raises(StreamexError) as bad_stop:
            await alice.place("BTC-USD", "sell", "stop_limit", "1", "10.00",
                              stop_price="10.001")
        assert bad_stop.value.code == INVALID_STOP_PRICE
        await alice.close()
    async with running_gateway(config, redis_url, clock_ms=lambda: wall_ms() - 20_000) as (
            _, behind_url):
        alice = await logged_on(behind_url, ALICE)
        late = await alice.place("BTC-USD", "buy", "limit", "1", "10.00", tif="GTD",
                                 expire_time=wall_ms() - 5_000)
        rejected, _ = await report_of(alice, late.order_id, "rejected")
        assert (rejected.status, rejected.reason) == ("rejected", EXPIRED)
        assert await alice.open_orders() == []
        await alice.close()


async def book_push(md: MarketDataClient, symbol: str, predicate: Any) -> dict[str, Any]:
    """The first ``book`` push of ``symbol`` that ``predicate`` accepts."""
    async with asyncio.timeout(TIMEOUT_S):
        async for push in md:
            if push.get("channel") == "book" and push.get("symbol") == symbol \
                    and predicate(push):
                return push
    raise AssertionError("the feed closed")


async def test_an_iceberg_shows_only_its_slice_to_the_public(
        tmp_path: Path, config: Config, redis_url: str, engine: Process,
        gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    feed = Process(["marketdata", "--config", str(tmp_path / "streamex.toml"), "--redis-url",
                    redis_url, "--port", "0"], tmp_path / "marketdata.log").start()
    try:
        md_url = await asyncio.to_thread(feed.wait_listening, "marketdata")
        async with MarketDataClient.connect(md_url) as md:
            await md.subscribe("book", "BTC-USD", depth=10)
            await book_push(md, "BTC-USD", lambda p: p["type"] == "snapshot")
            alice, bob = await logged_on(url, ALICE), await logged_on(url, BOB)
            iceberg = await alice.place("BTC-USD", "sell", "limit", "1", "150.00",
                                        display_qty="0.2", client_order_id="ice")
            new, _ = await report_of(alice, iceberg.order_id, "new")
            assert (new.qty, new.leaves_qty, new.display_qty) == ("1.0000", "1.0000", "0.2000")
            shown = await book_push(md, "BTC-USD", lambda p: bool(p["asks"]))
            assert shown["asks"] == [["150.00", "0.2000"]]

            # A buy of more than the slice: the hidden rest fills too, at the same price.
            await bob.place("BTC-USD", "buy", "limit", "0.3", "150.00")
            fills = await reports_until(alice, lambda got: sum(
                r.exec_type == "trade" for r in got) >= 1 and got[-1].cum_qty == "0.3000")
            assert {r.last_price for r in fills if r.exec_type == "trade"} == {"150.00"}
            [mine] = await alice.open_orders("BTC-USD")
            assert (mine.status, mine.qty, mine.cum_qty, mine.leaves_qty, mine.display_qty) == (
                "partially_filled", "1.0000", "0.3000", "0.7000", "0.2000")
            # The public sees what is left of the current slice (0.1 of the second one)...
            after = await book_push(md, "BTC-USD", lambda p: p["type"] == "update"
                                    and p["seq"] > shown["seq"])
            assert after["asks"] == [["150.00", "0.1000"]]
            # ... and once that is taken, a fresh slice, never the hidden rest.
            await bob.place("BTC-USD", "buy", "limit", "0.1", "150.00")
            refreshed = await book_push(md, "BTC-USD", lambda p: p["type"] == "update"
                                        and p["seq"] > after["seq"])
            assert refreshed["asks"] == [["150.00", "0.2000"]]
            await reports_until(alice, lambda got: bool(got) and got[-1].cum_qty == "0.4000")
            [mine] = await alice.open_orders("BTC-USD")
            assert (mine.cum_qty, mine.leaves_qty) == ("0.4000", "0.6000")
            await alice.close()
            await bob.close()
    finally:
        feed.stop()


async def test_orders_open_lists_stops_and_icebergs_also_from_a_new_gateways_snapshot(
        config: Config, redis_url: str, gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice, bob = await logged_on(url, ALICE), await logged_on(url, BOB)
    later = wall_ms() + 3_600_000
    tp = await alice.place("BTC-USD", "sell", "take_profit_limit", "0.5", "130.00",
                           stop_price="131.00", tif="GTD", expire_time=later,
                           client_order_id="tp-1")
    sl = await alice.place("BTC-USD", "sell", "stop_market", "0.25", stop_price="80.00")
    ice = await alice.place("BTC-USD", "buy", "limit", "2", "90.00", display_qty="0.5")
    await reports_until(alice, lambda got: len(got) == 3)
    await bob.place("BTC-USD", "sell", "limit", "0.1", "90.00")  # fills part of the iceberg
    await report_of(alice, ice.order_id, "trade")
    # An amend of a stop's trigger: it stays untriggered, with its new stop price.
    await alice.amend("BTC-USD", order_id=sl.order_id, stop_price="79.50")
    replaced, _ = await report_of(alice, sl.order_id, "replaced")
    assert (replaced.status, replaced.stop_price) == ("untriggered", "79.50")
    with pytest.raises(StreamexError) as bad:
        await alice.amend("BTC-USD", order_id=sl.order_id, stop_price="79.555")
    assert bad.value.code == INVALID_STOP_PRICE

    expected = [
        (tp.order_id, "take_profit_limit", "GTD", "untriggered", "130.00", "131.00", "0.5000",
         "0.5000", later, msgspec.UNSET, "tp-1"),
        (sl.order_id, "stop_market", "IOC", "untriggered", None, "79.50", "0.2500", "0.2500",
         msgspec.UNSET, msgspec.UNSET, None),
        (ice.order_id, "limit", "GTC", "partially_filled", "90.00", msgspec.UNSET, "2.0000",
         "1.9000", msgspec.UNSET, "0.5000", None),
    ]

    def rows(orders: list[ExecutionReport]) -> list[tuple[Any, ...]]:
        """orders.open lists them by age: the order they were placed in."""
        return [(o.order_id, o.type, o.tif, o.status, o.price, o.stop_price, o.qty,
                 o.leaves_qty, o.expire_time, o.display_qty, o.client_order_id)
                for o in orders]

    assert rows(await alice.open_orders("BTC-USD")) == expected

    # A gateway started now loads them from the engine's snapshot.
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async def snapshot_has_all() -> bool:
            data = await redis.get(snap_key("BTC-USD"))
            if data is None:
                return False
            held = {(o.order_id, o.untriggered, o.stop_price) for o in
                    decode_snapshot(data).orders}
            return {(sl.order_id, True, 7950), (tp.order_id, True, 13100)} <= held and any(
                o.order_id == ice.order_id and o.cum_qty == 1000
                for o in decode_snapshot(data).orders)

        await wait_until_async(snapshot_has_all, what="the engine's snapshot of the orders")
    finally:
        await redis.aclose()
    async with running_gateway(config, redis_url) as (_, fresh_url):
        fresh = await logged_on(fresh_url, ALICE)
        assert rows(await fresh.open_orders("BTC-USD")) == expected
        with pytest.raises(StreamexError) as duplicate:
            await fresh.place("BTC-USD", "buy", "limit", "1", "10.00", client_order_id="tp-1")
        assert duplicate.value.code == DUPLICATE_CLIENT_ORDER_ID
        await fresh.close()
    await alice.close()
    await bob.close()


async def test_cancel_on_disconnect_cancels_untriggered_stops(
        gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    watcher = await logged_on(url, ALICE)
    leaver = await logged_on(url, ALICE, cancel_on_disconnect=True)
    stops = [await leaver.place("BTC-USD", "buy", "stop_limit", "1", "120.00",
                                stop_price="119.00"),
             await leaver.place("ETH-USD", "sell", "take_profit_market", "1",
                                stop_price="200.00")]
    await reports_until(watcher, lambda got: len(got) == 2)
    await leaver.close()
    canceled = await reports_until(watcher, lambda got: len(got) == 2)
    assert {(r.symbol, r.order_id) for r in canceled} == {(s.symbol, s.order_id) for s in stops}
    assert {(r.exec_type, r.status, r.reason) for r in canceled} == {
        ("canceled", "canceled", CANCEL_ON_DISCONNECT)}
    assert await watcher.open_orders() == []
    await watcher.close()

"""Order entry end to end: real Redis, a real engine process, the gateway on a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from gateway_helpers import (
    ALICE,
    BOB,
    CAROL,
    RISK_ENABLED,
    Process,
    RawClient,
    engine_process,
    fund_accounts,
    logged_on,
    make_config,
    next_report,
    no_report,
    orders_entered,
    reports_until,
    running_gateway,
    wait_engine_ready,
    write_config,
)

from contract.errors import DUPLICATE_CLIENT_ORDER_ID, UNKNOWN_ORDER, StreamexError
from contract.settings import Config
from gateway.server import Gateway
from streamex.client import OrderClient
from streamex.redis_server import RedisServer


@pytest.fixture
def config() -> Config:
    return make_config()


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


async def test_two_accounts_cross_then_cancel_the_rest(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice, bob = await logged_on(url, ALICE), await logged_on(url, BOB)
    sell = await alice.place("BTC-USD", "sell", "limit", "1.5", "100.00", client_order_id="s-1")
    assert (sell.status, sell.client_order_id, sell.symbol) == ("received", "s-1", "BTC-USD")
    new = await next_report(alice)
    assert (new.exec_type, new.status, new.order_id, new.price, new.qty, new.leaves_qty) == (
        "new", "new", sell.order_id, "100.00", "1.5000", "1.5000")

    buy = await bob.place("BTC-USD", "buy", "limit", "1", "101.00")
    assert buy.client_order_id is None
    bob_new, bob_trade = await next_report(bob), await next_report(bob)
    assert (bob_new.exec_type, bob_new.order_id) == ("new", buy.order_id)
    assert (bob_trade.exec_type, bob_trade.status, bob_trade.liquidity) == (
        "trade", "filled", "taker")
    assert (bob_trade.last_qty, bob_trade.last_price, bob_trade.cum_qty, bob_trade.leaves_qty,
            bob_trade.avg_price, bob_trade.price) == (
        "1.0000", "100.00", "1.0000", "0.0000", "100.00", "101.00")

    maker = await next_report(alice)
    assert (maker.exec_type, maker.status, maker.liquidity, maker.order_id) == (
        "trade", "partially_filled", "maker", sell.order_id)
    assert (maker.last_qty, maker.last_price, maker.cum_qty, maker.leaves_qty,
            maker.avg_price) == ("1.0000", "100.00", "1.0000", "0.5000", "100.00")
    assert maker.trade_id == bob_trade.trade_id is not None
    assert maker.exec_id != bob_trade.exec_id
    assert maker.exec_id and maker.exec_id.startswith("BTC-USD:")

    await alice.cancel("BTC-USD", client_order_id="s-1")
    canceled = await next_report(alice)
    assert (canceled.exec_type, canceled.status, canceled.reason, canceled.leaves_qty,
            canceled.cum_qty) == ("canceled", "canceled", "USER_CANCEL", "0.0000", "1.0000")

    await alice.cancel("BTC-USD", order_id=sell.order_id)  # stale: already canceled
    stale = await next_report(alice)
    assert (stale.exec_type, stale.status, stale.reason, stale.order_id) == (
        "cancel_rejected", "rejected", UNKNOWN_ORDER, sell.order_id)
    assert stale.qty is None and stale.side is None
    assert await alice.open_orders() == [] and await bob.open_orders() == []
    await no_report(bob)
    await alice.close()
    await bob.close()


async def test_amend_market_orders_and_open_orders(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice, bob = await logged_on(url, ALICE), await logged_on(url, BOB)
    first = await alice.place("ETH-USD", "buy", "limit", "2", "50.00", client_order_id="b1")
    second = await alice.place("ETH-USD", "buy", "limit", "1", "49.00")
    await reports_until(alice, lambda got: len(got) == 2)

    await alice.amend("ETH-USD", client_order_id="b1", qty="1.5")
    replaced = await next_report(alice)
    assert (replaced.exec_type, replaced.status, replaced.qty, replaced.leaves_qty,
            replaced.order_id, replaced.client_order_id) == (
        "replaced", "new", "1.500", "1.500", first.order_id, "b1")
    await alice.amend("ETH-USD", order_id=second.order_id, price="49.50")
    assert (await next_report(alice)).price == "49.50"

    opened = await alice.open_orders("ETH-USD")
    assert [(o.order_id, o.exec_type, o.qty, o.price, o.leaves_qty) for o in opened] == [
        (first.order_id, "status", "1.500", "50.00", "1.500"),
        (second.order_id, "status", "1.000", "49.50", "1.000")]
    assert await alice.open_orders("BTC-USD") == []

    # A market sell sweeps both: price null on its reports, fills at the makers' prices.
    sweep = await bob.place("ETH-USD", "sell", "market", "3")
    bob_reports = await reports_until(bob, lambda got: got[-1:] and got[-1].exec_type
                                      in ("expired", "canceled") or False)
    assert all(r.price is None and r.order_id == sweep.order_id for r in bob_reports)
    trades = [r for r in bob_reports if r.exec_type == "trade"]
    assert [(t.last_qty, t.last_price) for t in trades] == [("1.500", "50.00"),
                                                            ("1.000", "49.50")]
    assert bob_reports[-1].reason == "NO_LIQUIDITY" and bob_reports[-1].leaves_qty == "0.000"
    # avg = (1.5 * 50 + 1 * 49.5) / 2.5 = 49.8
    assert trades[-1].avg_price == "49.80"
    await reports_until(alice, lambda got: len(got) == 2)
    assert await alice.open_orders() == []
    await alice.close()
    await bob.close()


async def xlen(redis_url: str, symbol: str = "BTC-USD") -> int:
    return await orders_entered(redis_url, symbol)


async def test_duplicate_client_order_id_of_an_open_order_is_refused_at_once(
        gateway: tuple[Gateway, str], redis_url: str) -> None:
    _, url = gateway
    alice = await logged_on(url, ALICE)
    first = await alice.place("BTC-USD", "buy", "limit", "1", "10.00", client_order_id="dup")
    assert (await next_report(alice)).exec_type == "new"
    entries = await xlen(redis_url)
    with pytest.raises(StreamexError) as caught:
        await alice.place("BTC-USD", "buy", "limit", "1", "11.00", client_order_id="dup")
    assert caught.value.code == DUPLICATE_CLIENT_ORDER_ID
    assert "'dup'" in caught.value.message and "BTC-USD" in caught.value.message
    assert await xlen(redis_url) == entries  # nothing sent to Redis
    await no_report(alice)
    # Unique per account and market: another market, another account may use it.
    await alice.place("ETH-USD", "buy", "limit", "1", "10.00", client_order_id="dup")
    assert (await next_report(alice)).exec_type == "new"
    bob = await logged_on(url, BOB)
    await bob.place("BTC-USD", "buy", "limit", "1", "10.00", client_order_id="dup")
    assert (await next_report(bob)).exec_type == "new"
    # Once the order is closed, its id is free again.
    await alice.cancel("BTC-USD", order_id=first.order_id)
    assert (await next_report(alice)).exec_type == "canceled"
    again = await alice.place("BTC-USD", "buy", "limit", "1", "11.00", client_order_id="dup")
    assert (await next_report(alice)).order_id == again.order_id
    await alice.close()
    await bob.close()


async def test_duplicate_client_order_id_in_flight_is_refused_at_once(
        tmp_path: Path, redis_url: str) -> None:
    """No engine yet: the first place is XADDed but not applied; this gateway knows it."""
    config = make_config()
    async with running_gateway(config, redis_url) as (_, url):
        raw = await RawClient.open(url)
        await raw.logon(ALICE)
        for i in range(3):  # pipelined: the 2nd and 3rd arrive before the 1st's XADD returns
            await raw.send(json.dumps({"id": i, "method": "order.place", "params": {
                "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "1",
                "price": f"1{i}.00", "client_order_id": "fly"}}))
        replies = [await raw.recv() for _ in range(3)]
        assert replies[0]["result"]["status"] == "received"
        assert [r["error"]["code"] for r in replies[1:]] == [DUPLICATE_CLIENT_ORDER_ID] * 2
        # Received, not applied yet: still refused, and nothing more reached Redis.
        reply = await raw.call({"id": 3, "method": "order.place", "params": {
            "symbol": "BTC-USD", "side": "buy", "type": "market", "client_order_id": "fly",
            **({"quote_qty": "100"} if RISK_ENABLED else {"qty": "1"})}})
        assert reply["error"]["code"] == DUPLICATE_CLIENT_ORDER_ID
        # An IOC that will expire on an empty book holds its id only until it is applied.
        reply = await raw.call({"id": 4, "method": "order.place", "params": {
            "symbol": "BTC-USD", "side": "sell", "type": "market", "qty": "1",
            "client_order_id": "ioc"}})
        assert reply["result"]["status"] == "received"
        assert await xlen(redis_url) == 2
        engine = engine_process(write_config(tmp_path, config), redis_url,
                                tmp_path / "engine.log").start()
        try:
            pushes = [await raw.recv_execution() for _ in range(3)]  # new, new, expired
            assert [(p["data"]["client_order_id"], p["data"]["exec_type"]) for p in pushes] == [
                ("fly", "new"), ("ioc", "new"), ("ioc", "expired")]
            reply = await raw.call({"id": 5, "method": "order.place", "params": {
                "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "1",
                "price": "9.00", "client_order_id": "fly"}})
            assert reply["error"]["code"] == DUPLICATE_CLIENT_ORDER_ID  # open now
            reply = await raw.call({"id": 6, "method": "order.place", "params": {
                "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "1",
                "price": "9.00", "client_order_id": "ioc"}})
            assert reply["result"]["status"] == "received"  # expired: free again
            assert (await raw.recv_execution())["data"]["exec_type"] == "new"
        finally:
            engine.stop()
        await raw.close()


async def test_duplicate_placed_through_another_gateway_is_rejected_by_the_engine(
        tmp_path: Path, redis_url: str) -> None:
    """The race a gateway cannot see: the asynchronous ``rejected`` report remains."""
    config = make_config()
    async with running_gateway(config, redis_url) as (_, url_a), \
            running_gateway(config, redis_url) as (_, url_b):
        on_a, on_b = await logged_on(url_a, ALICE), await logged_on(url_b, ALICE)
        first = await on_a.place("BTC-USD", "buy", "limit", "1", "10.00", client_order_id="dup")
        again = await on_b.place("BTC-USD", "buy", "limit", "1", "11.00", client_order_id="dup")
        engine = engine_process(write_config(tmp_path, config), redis_url,
                                tmp_path / "engine.log").start()
        try:
            for client in (on_a, on_b):
                new, rejected = await reports_until(client, lambda got: len(got) == 2)
                assert (new.exec_type, new.order_id) == ("new", first.order_id)
                assert (rejected.exec_type, rejected.status, rejected.reason,
                        rejected.order_id) == (
                    "rejected", "rejected", DUPLICATE_CLIENT_ORDER_ID, again.order_id)
        finally:
            engine.stop()
        await on_a.close()
        await on_b.close()


async def test_cancel_rejected_of_a_live_order_states_it(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice, bob = await logged_on(url, ALICE), await logged_on(url, BOB)
    sell = await alice.place("BTC-USD", "sell", "limit", "1", "100.00", client_order_id="s")
    await bob.place("BTC-USD", "buy", "limit", "0.4", "100.00")
    await reports_until(alice, lambda got: len(got) == 2)  # new, trade (partially filled)

    await alice.amend("BTC-USD", client_order_id="s", qty="0.3")  # below the filled 0.4
    report = await next_report(alice)
    assert (report.exec_type, report.status, report.reason, report.order_id,
            report.client_order_id) == (
        "cancel_rejected", "partially_filled", "INVALID_QTY", sell.order_id, "s")
    assert (report.side, report.type, report.tif, report.price, report.qty, report.cum_qty,
            report.leaves_qty, report.avg_price) == (
        "sell", "limit", "GTC", "100.00", "1.0000", "0.4000", "0.6000", "100.00")
    assert (report.last_qty, report.last_price, report.liquidity, report.trade_id) == (
        None, None, None, None)
    assert report.exec_id and report.exec_id.startswith("BTC-USD:")

    post = await alice.place("BTC-USD", "buy", "limit", "1", "99.00", post_only=True,
                             client_order_id="po")
    assert (await next_report(alice)).exec_type == "new"
    await alice.amend("BTC-USD", order_id=post.order_id, price="100.00")  # would take
    report = await next_report(alice)
    assert (report.exec_type, report.status, report.reason, report.order_id,
            report.client_order_id, report.price, report.leaves_qty) == (
        "cancel_rejected", "new", "POST_ONLY_WOULD_TAKE", post.order_id, "po", "99.00",
        "1.0000")

    # An order the gateway does not know open: "rejected" with the request's ids.
    await alice.cancel("BTC-USD", client_order_id="nope")
    report = await next_report(alice)
    assert (report.exec_type, report.status, report.reason, report.order_id,
            report.client_order_id, report.side) == (
        "cancel_rejected", "rejected", UNKNOWN_ORDER, None, "nope", None)
    assert {o.order_id for o in await alice.open_orders()} == {sell.order_id, post.order_id}
    await alice.close()
    await bob.close()


async def test_accounts_are_isolated(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    alice = await logged_on(url, ALICE)
    alice_again = await logged_on(url, ALICE)  # a second connection of the same account
    bob, carol = await logged_on(url, BOB), await logged_on(url, CAROL)
    placed = await alice.place("BTC-USD", "sell", "limit", "1", "200.00", client_order_id="mine")
    for client in (alice, alice_again):  # every connection of the owner gets the report
        assert (await next_report(client)).order_id == placed.order_id

    # Bob guesses alice's order id and client order id: every attempt is refused as unknown.
    await bob.cancel("BTC-USD", order_id=placed.order_id)
    await bob.cancel("BTC-USD", client_order_id="mine")
    await bob.amend("BTC-USD", order_id=placed.order_id, qty="5")
    await bob.amend("BTC-USD", client_order_id="mine", price="1.00")
    for _ in range(4):
        report = await next_report(bob)
        assert (report.exec_type, report.reason) == ("cancel_rejected", UNKNOWN_ORDER)
        assert report.side is None and report.qty is None and report.price is None
    await bob.cancel_all("BTC-USD")
    await bob.cancel_all()
    assert await bob.open_orders() == [] and await carol.open_orders() == []

    # Nothing reached alice's order, and nobody else saw a report about it.
    [still] = await alice.open_orders()
    assert (still.order_id, still.leaves_qty, still.status) == (placed.order_id, "1.0000", "new")
    await no_report(alice)
    await no_report(carol, 0.05)
    await no_report(bob, 0.05)

    # Bob's own order with the same client order id is his, and only he hears of it.
    own = await bob.place("BTC-USD", "buy", "limit", "1", "1.00", client_order_id="mine")
    assert (await next_report(bob)).order_id == own.order_id
    await bob.cancel("BTC-USD", client_order_id="mine")
    assert (await next_report(bob)).exec_type == "canceled"
    [still] = await alice.open_orders()
    assert still.order_id == placed.order_id
    await no_report(alice, 0.1)
    await no_report(carol, 0.05)
    for client in (alice, alice_again, bob, carol):
        await client.close()


async def test_replies_precede_the_pushes_they_cause(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    raw = await RawClient.open(url)
    await raw.logon(ALICE)
    count = 60
    for i in range(count):  # pipelined: no wait between requests
        await raw.send(json.dumps({"id": i, "method": "order.place", "params": {
            "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "0.001",
            "price": "10.00", "tif": "IOC" if i % 2 else "GTC"}}))
    replied: dict[str, int] = {}
    pushes = 0
    reply_ids: list[int] = []
    async with asyncio.timeout(10):
        while len(reply_ids) < count or pushes < count + count // 2:
            message = await raw.recv()
            if message.get("channel") == "balances":
                continue  # the holds of the GTC orders: not an execution
            if "channel" in message:
                order_id = message["data"]["order_id"]
                assert order_id in replied, f"push for {order_id} before its reply"
                pushes += 1
            else:
                replied[message["result"]["order_id"]] = message["id"]
                reply_ids.append(message["id"])
    assert reply_ids == list(range(count))  # replies in request order
    await raw.close()


async def test_concurrent_orders_reach_redis_in_batches(gateway: tuple[Gateway, str]) -> None:
    g, url = gateway
    clients = [await logged_on(url, account) for account in (ALICE, BOB, CAROL) * 4]
    before = (g.batcher.pipelines, g.batcher.entries)

    async def burst(client: OrderClient, n: int) -> list[str]:
        results = await asyncio.gather(*[
            client.place("ETH-USD", "buy", "limit", "0.001", f"{1 + (i % 50)}.00")
            for i in range(n)])
        return [r.order_id for r in results]

    ids = [i for batch in await asyncio.gather(*[burst(c, 25) for c in clients]) for i in batch]
    assert len(set(ids)) == len(ids) == 300
    pipelines = g.batcher.pipelines - before[0]
    assert g.batcher.entries - before[1] == 300
    assert pipelines <= 30, f"{pipelines} pipelines for 300 concurrent orders"
    for client in clients:
        await client.close()


async def test_unconfirmed_requests_after_redis_dies_are_internal_errors(
        gateway: tuple[Gateway, str], redis_server: object) -> None:
    _, url = gateway
    alice = await logged_on(url, ALICE)
    redis_server.kill()  # type: ignore[attr-defined]
    with pytest.raises(StreamexError) as caught:
        await alice.place("BTC-USD", "buy", "limit", "1", "10.00")
    assert caught.value.code == "INTERNAL"
    assert "may not have been received" in caught.value.message
    assert "Error" not in caught.value.message and "redis" not in caught.value.message.lower()
    assert await alice.ping() > 0  # the connection survives
    await alice.close()


async def test_orders_and_reports_flow_again_after_redis_restarts(
        gateway: tuple[Gateway, str], redis_server: RedisServer) -> None:
    """The XADD and :out connections are re-opened: once Redis is back (empty, no AOF
    here) and the engine has taken its market again, orders are received and reported."""
    _, url = gateway
    alice = await logged_on(url, ALICE)
    before = await alice.place("BTC-USD", "buy", "limit", "1", "10.00")
    assert (await next_report(alice)).order_id == before.order_id
    redis_server.kill()
    redis_server.restart()
    # Redis came back empty: the balances went with it; the operator deposits again.
    async with asyncio.timeout(20):
        while True:
            try:
                await fund_accounts(redis_server.url, make_config())
                break
            except (OSError, redis.exceptions.ConnectionError):
                await asyncio.sleep(0.1)
    placed = None
    async with asyncio.timeout(20):
        while placed is None:
            try:
                placed = await alice.place("BTC-USD", "buy", "limit", "1", "11.00")
            except StreamexError as exc:  # sent on the dead connection: not confirmed
                assert exc.code == "INTERNAL", exc
                await asyncio.sleep(0.1)
    assert placed.status == "received"
    report = await next_report(alice, timeout_s=20)
    assert (report.exec_type, report.order_id, report.price) == ("new", placed.order_id, "11.00")
    await alice.close()

"""The gateway under the risk stage: orders to the account's risk shard, its answers and balances.

A real Redis and a real in-process gateway; the risk engine is played by the
test, which writes real entries into ``sx:{acct-K}:out`` / ``:snap`` (and a
market's ``sx:{SYM}:out``) as the risk and market engines would. With
``shards = 2``: alice and carol are in shard 1 (order ids ``"<ms>-<n>-1"``),
bob in shard 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from gateway_helpers import (
    ACCOUNTS,
    ALICE,
    BOB,
    CAROL,
    RawClient,
    error_code,
    logged_on,
    next_report,
    no_report,
    running_gateway,
)
from timing import TIMEOUT_S, wait_until_async

from contract.commands import Amend, Cancel, CancelAll, Place
from contract.errors import (
    BAD_REQUEST,
    CANCEL_ON_DISCONNECT,
    DUPLICATE_CLIENT_ORDER_ID,
    INSUFFICIENT_FUNDS,
    INVALID_QTY,
    UNAUTHENTICATED,
    UNKNOWN_METHOD,
)
from contract.events import CancelRejected, Event, Report, encode_events
from contract.ids import stage_order_id
from contract.keys import in_stream, out_stream
from contract.market import DEFAULT_MARKETS, format_units
from contract.order_entry import PlaceParams
from contract.risk import (
    RISK_SNAPSHOT_VERSION,
    AccountBalance,
    Balance,
    Deposit,
    MarketAnswer,
    RiskEvent,
    RiskSnapshot,
    ToMarket,
    Transfer,
    decode_risk_command,
    encode_risk_events,
    encode_risk_snapshot,
    risk_keys,
    risk_shard,
)
from contract.settings import Config, RiskConfig
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from gateway.balances_view import BalancesView
from gateway.reports import report_of, risk_exec_id
from gateway.staged import StagedPlaces
from gateway.validation import METHODS, RISK_METHODS, commands_for, decode_request
from streamex.client import OrderClient

SHARDS = 2
MARKETS = tuple(msgspec.structs.replace(m, maker_fee="0.001", taker_fee="0.002")
                for m in DEFAULT_MARKETS)
A_SHARD = risk_shard(ALICE.id, SHARDS)
B_SHARD = risk_shard(BOB.id, SHARDS)


def risk_config(enabled: bool = True) -> Config:
    return Config(markets=MARKETS, accounts=ACCOUNTS,
                  risk=RiskConfig(enabled=enabled, shards=SHARDS))


CONFIG = risk_config()
BTC = CONFIG.market("BTC-USD")
USD_DECIMALS = CONFIG.asset_units["USD"]
BTC_DECIMALS = CONFIG.asset_units["BTC"]


def test_the_accounts_are_spread_as_the_tests_assume() -> None:
    assert (A_SHARD, B_SHARD, risk_shard(CAROL.id, SHARDS)) == (1, 0, 1)
    assert (USD_DECIMALS, BTC_DECIMALS) == (6, 4)


@contextlib.asynccontextmanager
async def gateway_of(config: Config, redis_url: str) -> AsyncIterator[str]:
    async with running_gateway(config, redis_url) as (_, url):
        yield url


@contextlib.asynccontextmanager
async def redis_of(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def risk_out(redis: aioredis.Redis, shard: int, events: list[RiskEvent],
                   last_input: str = "0-0") -> str:
    """XADD one ``sx:{acct-K}:out`` entry as the risk engine commits it; returns its id."""
    entry_id: Any = await redis.xadd(risk_keys(shard).output, {
        OUT_EVENTS_FIELD: encode_risk_events(events), OUT_INPUT_FIELD: last_input.encode()})
    return str(entry_id.decode())


async def market_out(redis: aioredis.Redis, symbol: str, events: list[Event]) -> None:
    """XADD one ``sx:{SYM}:out`` entry as a market engine commits it."""
    await redis.xadd(out_stream(symbol), {OUT_EVENTS_FIELD: encode_events(events),
                                          OUT_INPUT_FIELD: b"0-0"})


async def risk_inputs(redis: aioredis.Redis, shard: int) -> list[tuple[str, ToMarket]]:
    """``(order id, command)`` of every order entry of the shard's input stream (the test
    harness's initial deposits aside)."""
    found = []
    entries: Any = await redis.xrange(risk_keys(shard).input)
    for entry_id, fields in entries:
        cmd = decode_risk_command(fields[b"c"])
        if isinstance(cmd, Deposit) and cmd.ref.startswith("initial:"):
            continue
        assert isinstance(cmd, ToMarket)
        found.append((stage_order_id(entry_id, shard), cmd))
    return found


def rejected(seq: int, order_id: str, account: str = ALICE.id, coid: str | None = None,
             side: str = "buy", price: int = 10_000, qty: int = 5_000) -> Report:
    """The ``rejected`` report the risk stage gives an order whose hold does not fit."""
    return Report(seq, 1_700_000_000_000, account, order_id, coid, side,  # type: ignore[arg-type]
                  "limit", "GTC", price, qty, "rejected", "rejected", 0, 0, 0, 0, 0, None,
                  None, INSUFFICIENT_FUNDS)


def new_report(seq: int, order_id: str, account: str = ALICE.id, coid: str | None = None
               ) -> Report:
    return Report(seq, 1_700_000_000_001, account, order_id, coid, "buy", "limit", "GTC",
                  10_000, 5_000, "new", "new", 0, 0, 0, 5_000, 0, None, None, None)


def balance(seq: int, asset: str, available: int, held: int, account: str = ALICE.id,
            ts: int = 1_700_000_000_500) -> Balance:
    return Balance(seq, ts, account, asset, available, held)


async def next_balance(client: OrderClient) -> Any:
    async with asyncio.timeout(TIMEOUT_S):
        return await client.next_balance()


async def no_balance(client: OrderClient, within_s: float = 0.3) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            update = await client.next_balance()
            raise AssertionError(f"unexpected balance update {update}")


# -- order commands go to the account's risk shard -------------------------------------------


async def test_orders_go_to_the_accounts_risk_shard_with_its_order_ids(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE)
        bob = await logged_on(url, BOB)
        a = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00", client_order_id="a1")
        b = await bob.place("ETH-USD", "sell", "limit", "1.5", "2000.00")
        await alice.cancel("BTC-USD", order_id=a.order_id)
        await alice.amend("BTC-USD", client_order_id="a1", qty="0.75")
        await alice.cancel_all("ETH-USD")
        [(a_id, a_cmd), *rest] = await risk_inputs(redis, A_SHARD)
        [(b_id, b_cmd)] = await risk_inputs(redis, B_SHARD)
        # The order id of a place is stage_order_id(its risk input entry id, K).
        assert a.order_id == a_id and a_id.endswith(f"-{A_SHARD}") and a_id.count("-") == 2
        assert b.order_id == b_id and b_id.count("-") == 1  # shard 0: the entry id itself
        assert a_cmd == ToMarket("BTC-USD", Place(ALICE.id, "buy", "limit", 5_000, 10_000,
                                                  "GTC", False, "a1"))
        assert b_cmd == ToMarket("ETH-USD", Place(BOB.id, "sell", "limit", 1_500, 200_000))
        assert [cmd for _, cmd in rest] == [
            ToMarket("BTC-USD", Cancel(ALICE.id, a.order_id)),
            ToMarket("BTC-USD", Amend(ALICE.id, None, "a1", 7_500)),
            ToMarket("ETH-USD", CancelAll(ALICE.id)),
        ]
        # Nothing went to the markets' streams directly.
        assert await redis.xlen(in_stream("BTC-USD")) == 0
        assert await redis.xlen(in_stream("ETH-USD")) == 0
        await alice.close()
        await bob.close()


async def test_cancel_on_disconnect_goes_through_the_risk_shard(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE, cancel_on_disconnect=True)
        resting = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        refused = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        pending = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        # resting is open in the market, refused was answered by the risk stage,
        # pending has no report yet: it may be open, so it is cancelled too.
        await market_out(redis, "BTC-USD", [new_report(1, resting.order_id)])
        await risk_out(redis, A_SHARD, [MarketAnswer(1, 1, "BTC-USD",
                                                     rejected(1, refused.order_id))])
        seen = [await next_report(alice), await next_report(alice)]
        assert {r.order_id for r in seen} == {resting.order_id, refused.order_id}
        await alice.close()

        async def four() -> list[tuple[str, ToMarket]] | None:
            found = await risk_inputs(redis, A_SHARD)
            return found if len(found) >= 4 else None

        commands = await wait_until_async(four, what="the disconnect's cancel_all")
        assert commands[3][1] == ToMarket("BTC-USD", CancelAll(
            ALICE.id, sorted([resting.order_id, pending.order_id]), CANCEL_ON_DISCONNECT))


async def test_a_client_order_id_is_in_use_until_the_risk_stage_answers(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE)
        first = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00",
                                  client_order_id="x")
        with pytest.raises(Exception) as caught:
            await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00", client_order_id="x")
        assert getattr(caught.value, "code", None) == DUPLICATE_CLIENT_ORDER_ID
        # Another market, another account: not in use there.
        await alice.place("ETH-USD", "buy", "limit", "1", "100.00", client_order_id="x")
        carol = await logged_on(url, CAROL)
        await carol.place("BTC-USD", "buy", "limit", "0.5", "100.00", client_order_id="x")
        await risk_out(redis, A_SHARD, [MarketAnswer(1, 1, "BTC-USD",
                                                     rejected(1, first.order_id, coid="x"))])
        report = await next_report(alice)
        assert (report.order_id, report.reason) == (first.order_id, INSUFFICIENT_FUNDS)
        again = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00",
                                  client_order_id="x")
        # Open in the market now (its new report): in use again, from the view.
        await market_out(redis, "BTC-USD", [new_report(1, again.order_id, coid="x")])
        assert (await next_report(alice)).exec_type == "new"
        with pytest.raises(Exception) as caught:
            await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00", client_order_id="x")
        assert getattr(caught.value, "code", None) == DUPLICATE_CLIENT_ORDER_ID
        await alice.close()
        await carol.close()


def test_a_first_report_read_before_the_xadd_reply_resolves_the_place() -> None:
    staged = StagedPlaces()
    early = staged.submitting("BTC-USD", "alice", "c1")
    late = staged.submitting("BTC-USD", "alice", None)
    assert staged.in_use("BTC-USD", "alice", "c1")
    staged.resolve("5-0-1")  # the router read 5-0-1's report before its XADD reply
    staged.resolve("3-0")    # a report of some older order
    staged.added(early, "BTC-USD", "alice", "c1", "5-0-1")
    assert not staged.is_pending("5-0-1") and not staged.in_use("BTC-USD", "alice", "c1")
    assert staged.remembered == 2  # kept while `late` is in flight
    staged.added(late, "BTC-USD", "alice", None, "6-0-1")
    assert staged.is_pending("6-0-1") and staged.remembered == 0
    staged.resolve("6-0-1")
    assert not staged.is_pending("6-0-1") and len(staged) == 0
    failed = staged.submitting("BTC-USD", "alice", "c2")
    staged.failed(failed, "BTC-USD", "alice", "c2")
    assert not staged.in_use("BTC-USD", "alice", "c2") and staged.remembered == 0
    small = StagedPlaces(max_pending=2)
    for n in range(3):
        small.added(small.submitting("BTC-USD", "alice", f"k{n}"), "BTC-USD", "alice",
                    f"k{n}", f"{n}-0")
    assert len(small) == 2 and not small.in_use("BTC-USD", "alice", "k0")


# -- the risk stage's answers ----------------------------------------------------------------


async def test_a_market_answer_reaches_only_the_accounts_connections(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE)
        alice2 = await logged_on(url, ALICE)
        carol = await logged_on(url, CAROL)  # same shard, other account
        bob = await logged_on(url, BOB)
        placed = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00",
                                   client_order_id="big")
        await risk_out(redis, A_SHARD, [
            balance(1, "USD", 0, 0),
            MarketAnswer(2, 1_700_000_000_002, "BTC-USD",
                         rejected(2, placed.order_id, coid="big")),
        ])
        for client in (alice, alice2):
            report = await next_report(client)
            assert report.exec_id == risk_exec_id(A_SHARD, 2) == f"acct-{A_SHARD}:2"
            assert (report.order_id, report.client_order_id, report.symbol) == (
                placed.order_id, "big", "BTC-USD")
            assert (report.exec_type, report.status, report.reason) == (
                "rejected", "rejected", INSUFFICIENT_FUNDS)
            assert (report.price, report.qty, report.leaves_qty) == ("100.00", "0.5000",
                                                                     "0.0000")
            assert (report.fee, report.fee_asset) == ("0.000000", "USD")
            assert report.ts == 1_700_000_000_000  # the report's own ts
        await no_report(carol)
        await no_report(bob)
        assert await alice.open_orders() == []
        await asyncio.gather(*(c.close() for c in (alice, alice2, carol, bob)))


async def test_a_refused_amend_states_the_open_order(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE)
        placed = await alice.place("BTC-USD", "buy", "limit", "0.5", "100.00")
        await market_out(redis, "BTC-USD", [new_report(7, placed.order_id)])
        assert (await next_report(alice)).exec_id == "BTC-USD:7"
        await alice.amend("BTC-USD", order_id=placed.order_id, qty="5")
        [*_, (amend_id, _)] = await risk_inputs(redis, A_SHARD)
        await risk_out(redis, A_SHARD, [MarketAnswer(4, 9, "BTC-USD", CancelRejected(
            4, 9, ALICE.id, placed.order_id, None, amend_id, INSUFFICIENT_FUNDS))])
        report = await next_report(alice)
        assert (report.exec_id, report.exec_type, report.reason) == (
            f"acct-{A_SHARD}:4", "cancel_rejected", INSUFFICIENT_FUNDS)
        # The order is unchanged and stated as it is.
        assert (report.order_id, report.status, report.qty, report.leaves_qty) == (
            placed.order_id, "new", "0.5000", "0.5000")
        [open_order] = await alice.open_orders()
        assert (open_order.order_id, open_order.qty) == (placed.order_id, "0.5000")
        # A duplicate (seq already routed) is not reported twice.
        await risk_out(redis, A_SHARD, [MarketAnswer(4, 9, "BTC-USD", CancelRejected(
            4, 9, ALICE.id, placed.order_id, None, amend_id, INSUFFICIENT_FUNDS))])
        await no_report(alice)
        await alice.close()


# -- balances --------------------------------------------------------------------------------


async def test_balance_events_are_pushed_and_answered(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        raw = await RawClient.open(url)
        reply = await raw.call({"id": 1, "method": "account.balances"})
        assert error_code(reply) == UNAUTHENTICATED
        alice = await logged_on(url, ALICE)
        bob = await logged_on(url, BOB)
        assert await alice.balances() == []
        await risk_out(redis, A_SHARD, [
            Transfer(1, 5, "deposit", ALICE.id, "USD", 1_000_000_000, "r1", "applied", None),
            balance(2, "USD", 1_000_000_000, 0, ts=5),
            balance(3, "USD", 949_899_999, 50_100_001, ts=6),
            balance(4, "BTC", 12_345, 0, ts=7),
        ])
        updates = [await next_balance(alice) for _ in range(3)]
        assert [msgspec.structs.asdict(u) for u in updates] == [
            {"asset": "USD", "available": "1000.000000", "held": "0.000000", "ts": 5},
            {"asset": "USD", "available": "949.899999", "held": "50.100001", "ts": 6},
            {"asset": "BTC", "available": "1.2345", "held": "0.0000", "ts": 7},
        ]
        await no_balance(bob)
        await no_report(alice)
        balances = [msgspec.structs.asdict(b) for b in await alice.balances()]
        assert balances == [{"asset": "BTC", "available": "1.2345", "held": "0.0000"},
                            {"asset": "USD", "available": "949.899999", "held": "50.100001"}]
        [usd] = await alice.balances("USD")
        assert (usd.available, usd.held) == ("949.899999", "50.100001")
        [eth] = await alice.balances("ETH")  # never touched: zero
        assert (eth.asset, eth.available, eth.held) == ("ETH", "0.000", "0.000")
        assert await bob.balances() == []
        await raw.logon(ALICE)
        reply = await raw.call({"id": 2, "method": "account.balances",
                                "params": {"asset": "DOGE"}})
        assert error_code(reply) == BAD_REQUEST and "params.asset" in reply["error"]["message"]
        reply = await raw.call({"id": 3, "method": "account.balances",
                                "params": {"asset": 5}})
        assert error_code(reply) == BAD_REQUEST
        # The raw push shape of PROTOCOL.md.
        await risk_out(redis, A_SHARD, [balance(5, "USD", 1, 2, ts=8)])
        push = await raw.recv()
        assert push == {"channel": "balances", "type": "update", "data": {
            "asset": "USD", "available": "0.000001", "held": "0.000002", "ts": 8}}
        await asyncio.gather(raw.close(), alice.close(), bob.close())


async def test_balances_are_loaded_from_the_snapshot_and_out_after_a_restart(
        redis_url: str) -> None:
    async with redis_of(redis_url) as redis:
        # Before the snapshot: superseded by it, never applied on top.
        await risk_out(redis, A_SHARD, [balance(1, "USD", 5, 0), balance(2, "BTC", 7, 0)])
        at_snapshot = await risk_out(redis, A_SHARD, [balance(3, "USD", 500_000_000, 0)])
        snapshot = RiskSnapshot(
            RISK_SNAPSHOT_VERSION, A_SHARD, "0-0", at_snapshot, 3, 0,
            [AccountBalance(ALICE.id, "USD", 500_000_000, 0),
             AccountBalance(CAROL.id, "BTC", 10_000, 0)], [], [], {})
        await redis.set(risk_keys(A_SHARD).snap, encode_risk_snapshot(snapshot))
        # After it: applied.
        await risk_out(redis, A_SHARD, [balance(4, "USD", 400_000_000, 100_000_000)])
        await risk_out(redis, B_SHARD, [balance(1, "USD", 42, 0, account=BOB.id)])
        async with gateway_of(CONFIG, redis_url) as url:
            alice = await logged_on(url, ALICE)
            carol = await logged_on(url, CAROL)
            bob = await logged_on(url, BOB)
            assert [(b.asset, b.available, b.held) for b in await alice.balances()] == [
                ("USD", "400.000000", "100.000000")]
            assert [(b.asset, b.available) for b in await carol.balances()] == [
                ("BTC", "1.0000")]
            assert [(b.asset, b.available) for b in await bob.balances()] == [
                ("USD", "0.000042")]
            # Loading pushes nothing; what comes next is pushed.
            await no_balance(alice)
            await risk_out(redis, A_SHARD, [balance(3, "USD", 1, 1),  # already seen: skipped
                                            balance(5, "USD", 0, 0)])
            update = await next_balance(alice)
            assert (update.available, update.held) == ("0.000000", "0.000000")
            await asyncio.gather(alice.close(), carol.close(), bob.close())
        # Restart again: the same state from Redis.
        async with gateway_of(CONFIG, redis_url) as url:
            alice = await logged_on(url, ALICE)
            [usd] = await alice.balances()
            assert (usd.available, usd.held) == ("0.000000", "0.000000")
            await alice.close()


# -- quote_qty, fees ---------------------------------------------------------------------------


def _place(risk: bool, **params: Any) -> Place:
    frame = msgspec.json.encode({"id": 1, "method": "order.place",
                                 "params": {"symbol": "BTC-USD", **params}}).decode()
    request = decode_request(frame, RISK_METHODS if risk else METHODS)
    assert isinstance(request.params, PlaceParams)
    [(_, cmd)] = commands_for(request.params, {"BTC-USD": BTC}, "alice", risk=risk)
    assert isinstance(cmd, Place)
    return cmd


def _refused(risk: bool, **params: Any) -> tuple[str, str]:
    with pytest.raises(Exception) as caught:
        _place(risk, **params)
    return getattr(caught.value, "code", "?"), str(caught.value)


def test_market_buys_carry_quote_qty_under_the_risk_stage() -> None:
    buy = _place(True, side="buy", type="market", quote_qty="100.5")
    assert (buy.qty, buy.quote_qty, buy.price, buy.tif) == (0, 100_500_000, 0, "IOC")
    sell = _place(True, side="sell", type="market", qty="0.5")
    assert (sell.qty, sell.quote_qty) == (5_000, 0)
    code, message = _refused(True, side="buy", type="market", qty="0.5")
    assert code == BAD_REQUEST and "params.qty" in message
    code, message = _refused(True, side="buy", type="market")
    assert code == BAD_REQUEST and "params.quote_qty: required" in message
    code, message = _refused(True, side="sell", type="market", quote_qty="100")
    assert code == BAD_REQUEST and "params.quote_qty" in message
    code, message = _refused(True, side="buy", type="limit", qty="0.5", price="1.00",
                             quote_qty="100")
    assert code == BAD_REQUEST and "params.quote_qty" in message
    code, message = _refused(True, side="sell", type="market")
    assert (code, message) == (BAD_REQUEST, "params.qty: required")
    for bad in ("abc", "0", "-1", "1e3", "0.0000001"):
        code, message = _refused(True, side="buy", type="market", quote_qty=bad)
        assert code == INVALID_QTY and "params.quote_qty" in message, bad
    code, _ = _refused(True, side="buy", type="market", quote_qty=100)
    assert code == BAD_REQUEST  # a number, not a decimal string
    code, message = _refused(True, side="buy", type="market", quote_qty="100", tif="FOK")
    assert code == BAD_REQUEST and "params.tif" in message  # no all-or-nothing budget


def test_without_the_risk_stage_market_buys_keep_qty() -> None:
    buy = _place(False, side="buy", type="market", qty="0.5")
    assert (buy.qty, buy.quote_qty) == (5_000, 0)
    code, message = _refused(False, side="buy", type="market", quote_qty="100")
    assert code == BAD_REQUEST and "params.quote_qty" in message
    code, message = _refused(False, side="buy", type="market")
    assert (code, message) == (BAD_REQUEST, "params.qty: required")


async def test_quote_qty_through_the_gateway(redis_url: str) -> None:
    async with gateway_of(CONFIG, redis_url) as url, redis_of(redis_url) as redis:
        alice = await logged_on(url, ALICE)
        placed = await alice.place("BTC-USD", "buy", "market", quote_qty="250.25")
        [(order_id, cmd)] = await risk_inputs(redis, A_SHARD)
        assert order_id == placed.order_id
        assert cmd == ToMarket("BTC-USD", Place(ALICE.id, "buy", "market", 0, 0, "IOC",
                                                quote_qty=250_250_000))
        for params in ({"side": "buy", "qty": "0.5"}, {"side": "sell", "quote_qty": "1"}):
            with pytest.raises(Exception) as caught:
                await alice.place("BTC-USD", type="market", **params)  # type: ignore[arg-type]
            assert getattr(caught.value, "code", None) == BAD_REQUEST
        assert len(await risk_inputs(redis, A_SHARD)) == 1  # the refused ones never entered
        await alice.close()


def test_reports_carry_the_fee_in_the_quote() -> None:
    trade = Report(3, 9, "alice", "1-0", None, "buy", "limit", "GTC", 10_000, 5_000, "trade",
                   "partially_filled", 1_000, 10_000, 1_000, 4_000, 10_000_000, "taker", 1,
                   None, 20_001)
    wire = report_of(BTC, trade)
    assert (wire.fee, wire.fee_asset) == ("0.020001", "USD")
    new = report_of(BTC, new_report(1, "1-0"))
    assert (new.fee, new.fee_asset) == ("0.000000", "USD")
    assert format_units(0, 0) == "0" and format_units(-5, 2) == "-0.05"
    assert format_units(1_500, 6) == "0.001500" and format_units(12_345, 4) == "1.2345"


@pytest.mark.parametrize("enabled", [True, False])
async def test_market_reports_carry_fee_and_fee_asset(redis_url: str, enabled: bool) -> None:
    async with gateway_of(risk_config(enabled), redis_url) as url, \
            redis_of(redis_url) as redis:
        raw = await RawClient.open(url)
        await raw.logon(ALICE)
        fill = Report(2, 9, ALICE.id, "1-0", None, "sell", "limit", "GTC", 10_000, 5_000,
                      "trade", "filled", 5_000, 10_000, 5_000, 0, 50_000_000, "maker", 1, None,
                      50_000)
        await market_out(redis, "ETH-USD", [fill])
        push = await raw.recv()
        assert push["channel"] == "executions"
        assert (push["data"]["fee"], push["data"]["fee_asset"]) == ("0.050000", "USD")
        assert push["data"]["exec_id"] == "ETH-USD:2"
        reply = await raw.call({"id": 1, "method": "markets"})
        assert [(m["maker_fee"], m["taker_fee"]) for m in reply["result"]["markets"]] == [
            ("0.001", "0.002")] * 2
        await raw.close()


# -- the risk stage off ----------------------------------------------------------------------


async def test_without_the_risk_stage_orders_go_to_the_markets(redis_url: str) -> None:
    async with gateway_of(risk_config(False), redis_url) as url, redis_of(redis_url) as redis:
        raw = await RawClient.open(url)
        await raw.logon(ALICE)
        reply = await raw.call({"id": 1, "method": "account.balances"})
        assert error_code(reply) == UNKNOWN_METHOD
        alice = await logged_on(url, ALICE)
        placed = await alice.place("BTC-USD", "buy", "market", "0.5")
        entries: Any = await redis.xrange(in_stream("BTC-USD"))
        [(entry_id, _)] = entries
        assert placed.order_id == entry_id.decode()
        for shard in range(SHARDS):
            assert await redis.exists(risk_keys(shard).input) == 0
        # Balance events of a risk stream are not followed.
        await risk_out(redis, A_SHARD, [balance(1, "USD", 1, 0)])
        await no_balance(alice)
        # An order id of a risk shard is no order id here.
        reply = await raw.call({"id": 2, "method": "order.cancel", "params": {
            "symbol": "BTC-USD", "order_id": "1-0-1"}})
        assert error_code(reply) == "UNKNOWN_ORDER"
        await asyncio.gather(raw.close(), alice.close())



def test_the_balances_view_sums_the_fee_accounts_parts_over_shards() -> None:
    """Each shard credits the fee account with its own accounts' fees: one balance, summed."""
    view = BalancesView()
    view.load_snapshot(RiskSnapshot(1, 0, "1-0", "1-0", 3, 0, [
        AccountBalance("fees", "USD", 70, 0), AccountBalance("bob", "USD", 500, 20)], [], [],
        {}))
    view.apply(1, Balance(4, 9, "fees", "USD", 30, 0))
    assert view.get("fees", "USD") == (100, 0)
    assert view.of("fees") == [("USD", 100, 0)]
    view.apply(0, Balance(5, 9, "fees", "USD", 75, 0))  # a shard's part replaces its own
    assert view.get("fees", "USD") == (105, 0)
    assert view.get("bob", "USD") == (500, 20) and view.get("bob", "BTC") == (0, 0)

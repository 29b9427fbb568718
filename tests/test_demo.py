"""``streamex demo``: the seeded market maker.

The quoting logic (``streamex.demo_quotes``) is checked without the network,
against the real matching book in process; the demo itself against a real
Redis, engine, gateway and market data: it makes a live, uncrossed book with
trades, cancels everything when it stops, sends the same requests for the same
seed, and reconnects after the gateway is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from gateway_helpers import (
    ALICE,
    BOB,
    CAROL,
    Process,
    engine_process,
    make_config,
    running_gateway,
    start_gateway_process,
    wait_engine_ready,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketdata_helpers import BookMirror, FeedProcess

from contract.events import CancelRejected, Event, Report, Trade
from contract.market import DEFAULT_MARKETS, Market
from contract.order_entry import AmendParams, CancelParams, PlaceParams
from contract.settings import Account
from gateway.validation import commands_for
from matching.book import OrderBook
from streamex.client import MarketDataClient, OrderClient
from streamex.demo import Credentials, run_demo
from streamex.demo_quotes import (
    QuotePlanner,
    Resting,
    Step,
    TakeOrder,
    default_mid,
    maker_id,
    parse_mid,
    plan,
    reconcile,
    taker_id,
    wire_request,
)
from streamex.redis_server import RedisServer

SYMBOLS = [m.symbol for m in DEFAULT_MARKETS]
LEVELS = 5
WAIT_S = 15.0

Request = tuple[str, str, dict[str, Any]]


# -- the quoting logic, against the matching book in process ------------------------------


def _decimal(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    text = str(units).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}"


@st.composite
def markets(draw: st.DrawFn) -> Market:
    """Any market: ticks and lots of 1..25 units at 0..6 decimals, wide or very narrow ranges."""
    tick, tick_dec = draw(st.integers(1, 25)), draw(st.integers(0, 4))
    lot, lot_dec = draw(st.integers(1, 25)), draw(st.integers(0, 6))
    lo = draw(st.integers(1, 10_000))
    hi = draw(st.one_of(st.integers(lo, lo + 12), st.integers(lo, 10**9)))
    qlo = draw(st.integers(1, 100))
    qhi = draw(st.one_of(st.integers(qlo, qlo + 3), st.integers(qlo, 10**8)))
    symbol = draw(st.sampled_from([*SYMBOLS, "SOL-USD", "X-Y"]))
    return Market(symbol, "B", "Q", _decimal(tick, tick_dec), _decimal(lot, lot_dec),
                  _decimal(lot * qlo, lot_dec), _decimal(lot * qhi, lot_dec),
                  _decimal(tick * lo, tick_dec), _decimal(tick * hi, tick_dec))


_PARAMS = {"order.place": PlaceParams, "order.amend": AmendParams, "order.cancel": CancelParams}


class Simulation:
    """The demo's update loop (demo.py ``_update``) against an in-process matching book.

    Every request goes through the gateway's own validation (so a price off
    tick or out of range, a qty off lot, would raise StreamexError) and is
    applied to :class:`matching.book.OrderBook`, the engine's book.
    """

    def __init__(self, market: Market, seed: int, mid: int | None = None,
                 levels: int = LEVELS) -> None:
        self.market = market
        self.book = OrderBook(market)
        self.planner = QuotePlanner(market, seed, mid, levels=levels)
        self.requests: list[Request] = []
        self.events: list[Event] = []
        self._ids = {"maker": 0, "taker": 0}
        self._entries = 0

    def send(self, role: str, method: str, params: dict[str, Any]) -> list[Event]:
        self.requests.append((role, method, params))
        request = msgspec.convert(params, _PARAMS[method])
        [(_, command)] = commands_for(request, {self.market.symbol: self.market}, role)
        self._entries += 1
        events = self.book.apply(f"{1_700_000_000_000 + self._entries}-0", command)
        self.events += events
        return events

    def resting(self) -> list[Resting]:
        return [Resting(o.client_order_id or "", o.side, o.price, o.qty,  # type: ignore[arg-type]
                        o.cum_qty)
                for o in self.book.orders.values() if o.account == "maker"]

    def new_id(self, role: str) -> str:
        n = self._ids[role]
        self._ids[role] = n + 1
        return maker_id(n) if role == "maker" else taker_id(n)

    def update(self) -> tuple[Step, list[Event]]:
        """One update: the maker's diff, then the take; returns the step and the take's events."""
        step = self.planner.next_step()
        for action in reconcile(self.market, step.quotes, self.resting(),
                                lambda: self.new_id("maker")):
            self.send("maker", *wire_request(self.market, action))
        self.check_ladder(step)
        taken: list[Event] = []
        if step.take is not None:
            take = TakeOrder(self.new_id("taker"), step.take.side, step.take.price,
                             step.take.qty)
            taken = self.send("taker", *wire_request(self.market, take))
        return step, taken

    def check_ladder(self, step: Step) -> None:
        """After the maker's requests, its orders are exactly the target ladder."""
        for side, target in (("buy", step.bids), ("sell", step.asks)):
            mine = sorted((o for o in self.resting() if o.side == side), key=lambda o: o.price)
            assert [o.price for o in mine] == sorted(q.price for q in target), (side, step)
            qty = {q.price: q.qty for q in target}
            assert all(qty[o.price] <= 2 * o.leaves for o in mine)
        best_bid, best_ask = self.book.best_bid_price, self.book.best_ask_price
        assert best_bid is None or best_ask is None or best_bid < best_ask


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market=markets(), seed=st.integers(0, 2**63), data=st.data())
def test_planned_quotes_are_on_tick_within_limits_and_uncrossed(
        market: Market, seed: int, data: st.DataObject) -> None:
    mid = data.draw(st.none() | st.integers(market.min_ticks, market.max_ticks), label="mid")
    planner = QuotePlanner(market, seed, mid, levels=LEVELS)
    for _ in range(40):
        step = planner.next_step()
        assert market.min_ticks <= step.mid <= market.max_ticks
        for quotes, descending in ((step.bids, True), (step.asks, False)):
            prices = [q.price for q in quotes]
            assert len(prices) <= LEVELS
            assert prices == sorted(set(prices), reverse=descending)
        for quote in step.quotes:
            # parse_price/parse_qty raise for off-tick, off-lot or out-of-range values.
            assert market.parse_price(market.format_price(quote.price)) == quote.price
            assert market.parse_qty(market.format_qty(quote.qty)) == quote.qty
            assert market.min_lots <= quote.qty <= market.max_lots
        if step.bids and step.asks:
            assert step.bids[0].price < step.asks[0].price
        if step.take is not None:
            best = step.asks[0] if step.take.side == "buy" else step.bids[0]
            assert step.take.price == best.price
            assert market.min_lots <= step.take.qty <= market.max_lots


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market=markets(), seed=st.integers(0, 2**63))
def test_the_diff_keeps_the_book_on_the_target_ladder(market: Market, seed: int) -> None:
    """Against the engine's book: every request is valid, none is refused, the maker's
    orders are the target after each update, and each take prints a trade at its price."""
    sim = Simulation(market, seed)
    for _ in range(30):
        before = len(sim.requests)
        step, taken = sim.update()
        sent = len(sim.requests) - before - (step.take is not None)
        assert sent <= 2 * len(step.quotes)
        if step.take is not None:
            trades = [e for e in taken if isinstance(e, Trade)]
            assert trades and {t.price for t in trades} == {step.take.price}
    refused = [e for e in sim.events if isinstance(e, CancelRejected)
               or (isinstance(e, Report) and e.exec_type == "rejected")]
    assert not refused


@pytest.mark.parametrize("market", DEFAULT_MARKETS, ids=lambda m: m.symbol)
def test_same_seed_same_requests_and_few_of_them(market: Market) -> None:
    runs = [Simulation(market, seed) for seed in (5, 5, 6)]
    for sim in runs:
        for _ in range(300):
            sim.update()
    assert runs[0].requests == runs[1].requests
    assert runs[0].requests[:20] != runs[2].requests[:20]
    orders = [r for r in runs[0].requests if r[1] != "orders.open"]
    # 300 updates: the first places the ladder, then ~1 amend per side and grid step, plus
    # a take on ~60% of the updates: "a few orders per second" at 1 update/s.
    assert len(orders) < 5 * 300
    methods = {method for _, method, _ in orders}
    assert methods == {"order.place", "order.amend"}
    trades = [e for e in runs[0].events if isinstance(e, Trade)]
    assert len(trades) > 0.4 * 300
    # It walks: over 300 updates the mid moves by more than one grid step.
    assert {runs[0].planner.mid} != {default_mid(market)}
    sim = runs[0]
    assert len(sim.resting()) == 2 * LEVELS


def test_default_and_given_mids() -> None:
    btc, eth = DEFAULT_MARKETS
    assert btc.format_price(default_mid(btc)) == "60000.00"
    assert eth.format_price(default_mid(eth)) == "3000.00"
    other = Market("SOL-USD", "SOL", "USD", "0.05", "1", "1", "10", "0.05", "20")
    assert other.format_price(default_mid(other)) == "20.00"  # 100, clamped to max_price
    assert btc.format_price(parse_mid(btc, "2999.995")) == "3000.00"  # rounded to the tick
    for bad in ("", "-1", "0", "1e3", "abc", "1/2"):
        with pytest.raises(ValueError):
            parse_mid(btc, bad)
    planner = QuotePlanner(btc, 0, parse_mid(btc, "50000"))
    bids, asks = planner.ladder(planner.mid)
    assert len(bids) == len(asks) == LEVELS
    assert bids[0].price < planner.mid < asks[0].price


# -- the demo against the real services -----------------------------------------------------


def _credentials(account: Account) -> Credentials:
    return Credentials(account.api_key, account.secret)


async def _until(predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _open_orders(url: str, account: Account) -> list[Any]:
    async with OrderClient.connect(url) as client:
        await client.logon(account.api_key, account.secret)
        return await client.open_orders()


async def _stop(process: Process, timeout_s: float = WAIT_S) -> int:
    """SIGTERM and wait without blocking the event loop (an in-process gateway serves it)."""
    process.signal(signal.SIGTERM)
    for _ in range(int(timeout_s / 0.05)):
        if not process.running():
            break
        await asyncio.sleep(0.05)
    try:
        return process.wait(0.1)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"demo did not stop within {timeout_s} s:\n{process.log()}"
                             ) from None


@asynccontextmanager
async def _exchange(tmp_path: Path, redis_url: str, name: str = "x",
                    feed: bool = False) -> AsyncIterator[tuple[Path, str | None]]:
    """An engine (and market data) on ``redis_url``; yields the config and the feed URL."""
    config_path = write_config(tmp_path, make_config())
    engine = engine_process(config_path, redis_url, tmp_path / f"{name}-engine.log").start()
    md = FeedProcess(redis_url, config_path, tmp_path / f"{name}-md.log").start() \
        if feed else None
    try:
        await wait_engine_ready(redis_url)
        yield config_path, md.url if md else None
    finally:
        if md is not None:
            md.stop()
        engine.stop()


def _on_tick(market: Market, levels: list[list[str]]) -> None:
    for price, qty in levels:
        assert market.format_price(market.parse_price(price)) == price
        assert market.format_qty(market.parse_qty(qty)) == qty


async def test_demo_makes_a_live_book_with_trades_and_cancels_when_stopped(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``streamex demo`` as a process: it continues from the book it finds (BTC-USD) or
    from the default (ETH-USD), both sides fill up, trades print, and SIGTERM cancels."""
    async with _exchange(tmp_path, redis_url, feed=True) as (config_path, md_url), \
            running_gateway(make_config(), redis_url) as (_, url), \
            MarketDataClient.connect(md_url or "") as feed:
        assert md_url is not None
        books = {s: BookMirror(depth=10) for s in SYMBOLS}
        trades: dict[str, list[Any]] = {s: [] for s in SYMBOLS}
        for symbol in SYMBOLS:
            await feed.subscribe("book", symbol, depth=10)
            await feed.subscribe("trades", symbol)

        async def follow(until: Callable[[], bool]) -> None:
            """Apply pushes until ``until()``; the book is checked at every message."""
            async with asyncio.timeout(WAIT_S):
                while not until():
                    push = await feed.next_push()
                    if push["channel"] == "trades":
                        trades[push["symbol"]] += push["data"]
                    elif push["channel"] == "book":
                        book = books[push["symbol"]]
                        book.apply(push)  # checks the seq chain and the checksum
                        bids, asks = book.top("buy"), book.top("sell")
                        if bids and asks:  # never crossed
                            assert float(bids[0][0]) < float(asks[0][0]), push

        async with OrderClient.connect(url) as carol:  # someone else's orders, left resting
            await carol.logon(CAROL.api_key, CAROL.secret)
            await carol.place("BTC-USD", "buy", "limit", "0.0100", "50000.00")
            await carol.place("BTC-USD", "sell", "limit", "0.0100", "50010.00")
        await follow(lambda: bool(books["BTC-USD"].bids and books["BTC-USD"].asks))

        # The maker from the config, the taker by key, its secret from the environment.
        monkeypatch.setenv("STREAMEX_DEMO_TAKER_SECRET", BOB.secret)
        demo = Process(["demo", "--config", str(config_path), "--maker", "alice",
                        "--taker-key", BOB.api_key, "--gateway-url", url,
                        "--marketdata-url", md_url, "--seed", "7", "--rate", "5"],
                       tmp_path / "demo.log").start()
        try:
            await follow(lambda: all(len(books[s].bids) >= LEVELS
                                     and len(books[s].asks) >= LEVELS and trades[s]
                                     for s in SYMBOLS))
            for market in DEFAULT_MARKETS:
                _on_tick(market, books[market.symbol].top("buy"))
                _on_tick(market, books[market.symbol].top("sell"))
                _on_tick(market, [[t["price"], t["qty"]] for t in trades[market.symbol]])

            assert await _stop(demo) == 0
            assert await _open_orders(url, ALICE) == []
            assert await _open_orders(url, BOB) == []
            btc, eth = books["BTC-USD"], books["ETH-USD"]
            await follow(lambda: set(btc.bids) <= {"50000.00"} and set(btc.asks) <= {"50010.00"}
                         and not eth.bids and not eth.asks)  # only carol's orders are left
        finally:
            if demo.running():
                demo.kill()
        log = demo.log()
        # Quiet: one line saying what it quotes, nothing else (no warnings).
        assert len(log.splitlines()) == 1, log
        assert "level=info logger=streamex.demo event=start service=demo maker=alice " \
            "taker=bob seed=7 rate=5 levels=5" in log
        assert "BTC-USD around 50005.00" in log and "ETH-USD around 3000.00" in log


async def test_same_seed_twice_sends_the_same_first_requests(
        tmp_path: Path, redis_url: str) -> None:
    """Two fresh exchanges, the same seed: the same requests per market, in the same order."""
    other = RedisServer(data_dir=tmp_path / "redis2", die_with_parent=True)
    other.start()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    n = 40
    try:
        async with _exchange(first, redis_url, "a"), _exchange(second, other.url, "b"), \
                running_gateway(make_config(), redis_url) as (_, url_a), \
                running_gateway(make_config(), other.url) as (_, url_b):
            records: list[list[Request]] = [[], []]
            stop = asyncio.Event()
            demos = [asyncio.create_task(run_demo(
                url, _credentials(ALICE), _credentials(BOB), seed=11, rate=10, stop=stop,
                on_request=lambda *r, into=into: into.append(r)))
                for url, into in ((url_a, records[0]), (url_b, records[1]))]

            def per_market(record: list[Request], symbol: str) -> list[Request]:
                return [r for r in record if r[2].get("symbol") == symbol]

            async def enough() -> bool:
                return all(len(per_market(r, s)) >= n for r in records for s in SYMBOLS)

            try:
                await _until(enough, f"{n} requests per market from both demos")
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*demos), WAIT_S)
            for symbol in SYMBOLS:
                a, b = (per_market(r, symbol)[:n] for r in records)
                assert a == b, symbol
                methods = {(role, method) for role, method, _ in a}
                # The sequence covers quoting, re-quoting after fills and taking.
                assert {("maker", "orders.open"), ("maker", "order.place"),
                        ("taker", "order.place")} <= methods, methods
            for url in (url_a, url_b):
                assert await _open_orders(url, ALICE) == []
    finally:
        other.stop()


async def _gateway_on(config_path: Path, redis_url: str, port: int, log_path: Path) -> Process:
    """``streamex gateway --port PORT`` once it listens (the port a killed one had)."""
    process = Process(["gateway", "--config", str(config_path), "--redis-url", redis_url,
                       "--port", str(port)], log_path).start()
    try:
        await asyncio.to_thread(process.wait_listening, "gateway")
    except AssertionError:
        process.kill()
        raise
    return process


async def test_demo_reconnects_after_the_gateway_is_killed_and_resumes(
        tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with _exchange(tmp_path, redis_url) as (config_path, _):
        gateway, url = await start_gateway_process(config_path, redis_url,
                                                   tmp_path / "gateway.log")
        port = urlsplit(url).port
        assert port is not None
        requests: list[Request] = []
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(url, _credentials(ALICE), _credentials(BOB),
                                            seed=3, rate=5, stop=stop,
                                            on_request=lambda *r: requests.append(r)))
        most = 0

        async def full_ladders() -> bool:
            """Each market has exactly its ladder: 5 bids and 5 asks, none twice."""
            nonlocal most
            assert not demo.done(), demo
            orders = await _open_orders(url, ALICE)
            counts = {s: [o for o in orders if o.symbol == s] for s in SYMBOLS}
            most = max([most, *(len(c) for c in counts.values())])
            return all(sorted(o.side for o in c) == ["buy"] * LEVELS + ["sell"] * LEVELS
                       and len({o.price for o in c}) == 2 * LEVELS for c in counts.values())

        try:
            await _until(full_ladders, "the demo's ladders")
            gateway.kill()  # a crash: no cancel_on_disconnect, the orders stay in the book
            before = len(requests)
            gateway = await _gateway_on(config_path, redis_url, port, tmp_path / "gateway.log")

            async def resumed() -> bool:
                later = requests[before:]
                moved = any(m in ("order.amend", "order.place") for r, m, _ in later
                            if r == "maker")
                took = any(r == "taker" for r, _, _ in later)
                return moved and took and await full_ladders()

            await _until(resumed, "quoting to resume on the restarted gateway")
            # It took its surviving orders over instead of quoting a second ladder.
            assert most <= 2 * LEVELS
            assert any("reconnecting" in r.getMessage() for r in caplog.records)
            stop.set()
            await asyncio.wait_for(demo, WAIT_S)
            assert await _open_orders(url, ALICE) == []
            assert await _open_orders(url, BOB) == []
        finally:
            stop.set()
            if not demo.done():
                demo.cancel()
            gateway.stop()


async def test_demo_backs_off_when_rate_limited_and_still_builds_its_ladders(
        tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A connection limit below the first ladders' burst: refused, it backs off and gets there."""
    config = make_config(connection_rate=20.0, connection_burst=8)
    async with _exchange(tmp_path, redis_url), \
            running_gateway(config, redis_url) as (_, url):
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(url, _credentials(ALICE), _credentials(BOB),
                                            seed=1, rate=2, stop=stop))

        async def full_ladders() -> bool:
            assert not demo.done(), demo
            orders = await _open_orders(url, ALICE)
            return all(len([o for o in orders if o.symbol == s]) == 2 * LEVELS for s in SYMBOLS)

        started = time.monotonic()
        try:
            await _until(full_ladders, "the ladders despite the rate limit")
        finally:
            stop.set()
            await asyncio.wait_for(demo, WAIT_S)
        elapsed = time.monotonic() - started
        messages = [r.getMessage() for r in caplog.records]
        refused = [m for m in messages if "RATE_LIMITED" in m and "retrying in" in m]
        assert refused
        assert not [m for m in messages if "could not confirm" in m]
        # Each refusal pauses that market for at least 0.5 s: no hammering.
        assert len(refused) <= len(SYMBOLS) * (elapsed / 0.5 + 1)
        assert await _open_orders(url, ALICE) == []


def test_a_seed_gives_the_same_plan_in_another_process() -> None:
    """Nothing depends on the process (hash randomization, ids): a fresh interpreter agrees."""
    code = ("from contract.market import DEFAULT_MARKETS\n"
            "from streamex.demo_quotes import plan\n"
            "print(repr([plan(m, 42, 50) for m in DEFAULT_MARKETS]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONHASHSEED": "random"},
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == repr([plan(m, 42, 50) for m in DEFAULT_MARKETS])


def test_command_line_accounts_secrets_and_urls(tmp_path: Path) -> None:
    from streamex.cli import build_parser, main
    from streamex.demo import _settings

    config_path = write_config(tmp_path, make_config())

    def settings(*argv: str, **environ: str) -> Any:
        return _settings(build_parser("demo").parse_args(["demo", *argv]), environ)

    got = settings("--config", str(config_path), "--maker", "alice", "--taker", "bob")
    assert (got.maker, got.taker) == (_credentials(ALICE), _credentials(BOB))
    assert got.gateway_url == "ws://127.0.0.1:8001/"  # the config's [gateway]
    assert got.marketdata_url == "ws://127.0.0.1:8002/"
    assert ALICE.secret not in repr(got.maker)  # the secret stays out of reprs
    got = settings("--maker-key", "k1", "--taker-key", "k2", "--taker-secret", "s2",
                   "--mid", "BTC-USD=65000.5", STREAMEX_DEMO_MAKER_SECRET="s1")
    assert (got.maker, got.taker) == (Credentials("k1", "s1"), Credentials("k2", "s2"))
    assert (got.gateway_url, got.marketdata_url) == ("ws://127.0.0.1:8001/", None)
    assert got.mids == {"BTC-USD": "65000.5"}
    for argv in (["--maker-key", "k1", "--taker-key", "k2"],  # no secrets
                 ["--config", str(config_path)],  # no demo1/demo2 in this config
                 ["--config", str(config_path), "--maker", "alice", "--taker", "alice"],
                 ["--config", str(config_path), "--maker", "alice", "--taker", "bob",
                  "--mid", "BTC-USD"],
                 ["--config", str(tmp_path / "missing.toml")]):
        with pytest.raises(ValueError):
            settings(*argv)
    assert main(["demo", "--maker-key", "k1", "--taker-key", "k2"]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--rate", "1000"])

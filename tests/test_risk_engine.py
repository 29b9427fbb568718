"""The risk stage end to end with real processes: ``streamex risk`` + ``streamex engine``.

Orders enter each account's risk shard (as the gateway writes them), are held,
forwarded to the markets, matched, and settled back from the markets' ``:out``.
Checked against arithmetic done here from the execution reports alone, across
``kill -9`` of risk and market engines: the reports the markets wrote, and the
reports websocket clients logged on to a real gateway received.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from gateway_helpers import start_gateway_process
from streamex_process import StreamexProcess
from timing import TIMEOUT_S, wait_until

from contract.commands import Cancel, Command, Place
from contract.events import Report, encode_events
from contract.keys import out_stream
from contract.market import DEFAULT_MARKETS, Market
from contract.order_entry import ExecutionReport
from contract.risk import (
    Balance,
    Deposit,
    MarketAnswer,
    Settle,
    ToMarket,
    Transfer,
    Withdraw,
    decode_risk_command,
    decode_risk_events,
    encode_risk_command,
    encode_risk_events,
    risk_keys,
    risk_shard,
)
from contract.settings import Config
from contract.streams import IN_FIELD, OUT_EVENTS_FIELD, events_of
from matching.book import OrderBook
from risk.settler import settle_commands
from streamex.admin_cmd import balances
from streamex.client import OrderClient
from streamex.config import load_config
from streamex.redis_server import RedisServer

SHARDS = 2
ACCOUNTS = ("alice", "bob", "carol", "dave")
START = {"USD": "100000", "BTC": "5", "ETH": "50"}

CONFIG = """
[risk]
enabled = true
shards = {shards}

[engine]
snapshot_every = 40
lease_ms = 1500
block_ms = 100

[[markets]]
symbol = "BTC-USD"
base = "BTC"
quote = "USD"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
max_qty = "1000"
min_price = "0.01"
max_price = "1000000"
maker_fee = "0.001"
taker_fee = "0.002"

[[markets]]
symbol = "ETH-USD"
base = "ETH"
quote = "USD"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "10000"
min_price = "0.01"
max_price = "100000"
maker_fee = "0"
taker_fee = "0.0015"
"""


def _write_config(directory: Path) -> Path:
    text = CONFIG.format(shards=SHARDS)
    for name in ACCOUNTS:
        funds = ", ".join(f'{a} = "{v}"' for a, v in START.items())
        text += (f'\n[[accounts]]\nid = "{name}"\napi_key = "{name}-key"\n'
                 f'secret = "{name}-secret-0123456789"\nbalances = {{ {funds} }}\n')
    path = directory / "streamex.toml"
    path.write_text(text)
    return path


class Exchange:
    """Risk and market engine processes on one Redis, restartable."""

    def __init__(self, redis_url: str, config_path: Path, log_dir: Path) -> None:
        self.url = redis_url
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.log_dir = log_dir
        self.client = redis.Redis.from_url(redis_url)
        self.risk: dict[int, StreamexProcess] = {}
        self.engine: StreamexProcess | None = None

    def start_risk(self, shard: int) -> None:
        self.risk[shard] = StreamexProcess(
            ["risk", "--config", str(self.config_path), "--redis-url", self.url,
             "--shards", str(shard), "--consumer", f"risk-{shard}", "--stats-interval", "1"],
            self.log_dir / f"risk-{shard}.log").start()

    def start_engine(self) -> None:
        self.engine = StreamexProcess(
            ["engine", "--config", str(self.config_path), "--redis-url", self.url,
             "--consumer", "engine", "--stats-interval", "1"],
            self.log_dir / "engine.log").start()

    def stop(self) -> None:
        for p in [*self.risk.values(), *([self.engine] if self.engine else [])]:
            p.kill()
        self.client.close()

    def market(self, symbol: str) -> Market:
        return self.config.market(symbol)

    def send(self, symbol: str, cmd: Command) -> str:
        """XADD ``cmd`` to its account's shard as the gateway does; the order id."""
        shard = risk_shard(cmd.account, SHARDS)
        entry = self.client.xadd(risk_keys(shard).input,
                                 {IN_FIELD: encode_risk_command(ToMarket(symbol, cmd))})
        return entry.decode() if shard == 0 else f"{entry.decode()}-{shard}"

    def transfer(self, cmd: Deposit | Withdraw) -> None:
        shard = risk_shard(cmd.account, SHARDS)
        self.client.xadd(risk_keys(shard).input, {IN_FIELD: encode_risk_command(cmd)})

    def balances(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Committed balances in units: account -> asset -> (available, held)."""
        units = self.config.asset_units
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for account, assets in balances(self.client, self.config, None).items():
            for asset, b in assets.items():
                out.setdefault(account, {})[asset] = (_units(b["available"], units[asset]),
                                                      _units(b["held"], units[asset]))
        return out

    def risk_events(self) -> list[object]:
        events: list[object] = []
        for shard in range(SHARDS):
            for _, fields in self.client.xrange(risk_keys(shard).output):
                events += decode_risk_events(fields[OUT_EVENTS_FIELD])
        return events

    def market_reports(self, symbol: str) -> list[Report]:
        return [e for _, fields in self.client.xrange(out_stream(symbol))
                for e in events_of(fields) if isinstance(e, Report)]

    def settled_everything(self) -> bool:
        """Every market :out entry copied and every risk input applied (quiescent)."""
        for shard in range(SHARDS):
            keys = risk_keys(shard)
            last_in = self.client.xrevrange(keys.input, count=1)
            applied = self.client.get(keys.applied)
            if last_in and last_in[0][0] != applied:
                return False
            positions = self.client.hgetall(f"sx:{{acct-{shard}}}:positions")
            for m in self.config.markets:
                last_out = self.client.xrevrange(out_stream(m.symbol), count=1)
                if last_out and positions.get(m.symbol.encode()) != last_out[0][0]:
                    return False
        for m in self.config.markets:
            last_in = self.client.xrevrange(f"sx:{{{m.symbol}}}:in", count=1)
            applied = self.client.get(f"sx:{{{m.symbol}}}:applied")
            if last_in and last_in[0][0] != applied:
                return False
        return True


def _units(text: str, decimals: int) -> int:
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole) * 10**decimals + int((frac + "0" * decimals)[:decimals] or 0)
    return -value if text.startswith("-") else value


class ReportListeners:
    """One websocket client per account, logged on to a real ``streamex gateway`` process,
    collecting every execution report it is pushed (on a thread with its own event loop,
    so the test's blocking waits never stop them from reading)."""

    def __init__(self, ex: Exchange) -> None:
        self.reports: dict[str, list[ExecutionReport]] = {a: [] for a in ACCOUNTS}
        self._ex = ex
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._gateway: Any = None
        self._clients: list[OrderClient] = []
        self._tasks: list[asyncio.Future[None]] = []
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(TIMEOUT_S * 2)

    async def _start(self) -> None:
        self._gateway, url = await start_gateway_process(self._ex.config_path, self._ex.url,
                                                         self._ex.log_dir / "gateway.log")
        for account in ACCOUNTS:
            client = await OrderClient.connect(url)
            await client.logon(f"{account}-key", f"{account}-secret-0123456789")
            self._clients.append(client)
            self._tasks.append(asyncio.ensure_future(self._collect(client, account)))

    async def _collect(self, client: OrderClient, account: str) -> None:
        async for report in client.executions():
            self.reports[account].append(report)

    def order_ids(self, account: str, exec_types: tuple[str, ...]) -> set[str]:
        return {r.order_id for r in list(self.reports[account])
                if r.exec_type in exec_types and r.order_id is not None}

    def close(self) -> None:
        async def stop() -> None:
            for client in self._clients:
                await client.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._gateway is not None:
                self._gateway.kill()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)
        self._loop.close()


def _received_totals(ex: Exchange, listeners: ReportListeners) -> dict[str, dict[str, int]]:
    """available + held per account and asset, from the trade reports the clients were
    pushed (decimal strings, as a client sees them) and the initial balances."""
    totals: dict[str, dict[str, int]] = {a: dict(_initial(ex)) for a in ACCOUNTS}
    units = ex.config.asset_units
    for account, reports in listeners.reports.items():
        seen: set[str | None] = set()
        for r in reports:
            if r.exec_type != "trade":
                continue
            assert r.exec_id not in seen, f"{account} was pushed {r.exec_id} twice"
            seen.add(r.exec_id)
            m = ex.market(r.symbol)
            assert r.last_qty is not None and r.last_price is not None
            base = _units(r.last_qty, units[m.base])
            notional = Decimal(r.last_qty) * Decimal(r.last_price) * 10 ** units[m.quote]
            assert notional == notional.to_integral_value(), r
            fee = _units(r.fee, units[r.fee_asset])
            t = totals[account]
            if r.side == "buy":
                t[m.base] += base
                t[m.quote] -= int(notional) + fee
            else:
                t[m.base] -= base
                t[m.quote] += int(notional) - fee
    return totals


@pytest.fixture
def exchange(redis_url: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(redis_url, _write_config(tmp_path), tmp_path)
    ex.start_engine()
    for shard in range(SHARDS):
        ex.start_risk(shard)
    try:
        yield ex
    finally:
        ex.stop()


def _initial(ex: Exchange) -> dict[str, int]:
    units = ex.config.asset_units
    return {a: _units(v, units[a]) for a, v in START.items()}


def _funded(ex: Exchange) -> bool:
    got = ex.balances()
    want = _initial(ex)
    return all(got.get(a, {}).get(asset, (0, 0))[0] == amount
               for a in ACCOUNTS for asset, amount in want.items())


def _recomputed(ex: Exchange) -> dict[str, dict[str, int]]:
    """available + held per account and asset, from the trade reports alone."""
    totals: dict[str, dict[str, int]] = {a: dict(_initial(ex)) for a in ACCOUNTS}
    fees: dict[str, int] = defaultdict(int)
    for m in ex.config.markets:
        for r in ex.market_reports(m.symbol):
            if r.exec_type != "trade":
                continue
            base = m.base_amount(r.last_qty)
            notional = m.notional(r.last_price, r.last_qty)
            t = totals[r.account]
            if r.side == "buy":
                t[m.base] += base
                t[m.quote] -= notional + r.fee
            else:
                t[m.base] -= base
                t[m.quote] += notional - r.fee
            fees[m.quote] += r.fee
    totals["fees"] = dict(fees)
    return totals


def _assert_books_balance(ex: Exchange,
                          extra_usd: dict[str, dict[str, int]] | None = None) -> None:
    got = ex.balances()
    recomputed = _recomputed(ex)
    for account, assets in (extra_usd or {}).items():
        for asset, amount in assets.items():
            recomputed[account][asset] += amount
    for account, assets in recomputed.items():
        for asset, total in assets.items():
            available, held = got.get(account, {}).get(asset, (0, 0))
            assert available >= 0 and held >= 0, (account, asset, available, held)
            assert available + held == total, (account, asset, available, held, total)
    # Conservation: per asset, everything is what was deposited.
    initial = _initial(ex)
    for asset, amount in initial.items():
        total = sum(sum(b) for acct in got.values() for a, b in acct.items() if a == asset)
        deposited = sum(d.get(asset, 0) for d in (extra_usd or {}).values())
        assert total == amount * len(ACCOUNTS) + deposited, (asset, total)


def test_a_trade_settles_both_sides_with_fees_and_funds_bound_orders(exchange: Exchange
                                                                       ) -> None:
    ex = exchange
    assert wait_until(lambda: _funded(ex), TIMEOUT_S), ex.balances()
    btc = ex.market("BTC-USD")
    price = btc.parse_price("20000")
    qty = btc.parse_qty("0.5")
    sell = ex.send("BTC-USD", Place("bob", "sell", "limit", qty, price))
    # Two shards forward independently: let bob's order rest first, so alice takes.
    assert wait_until(lambda: any(r.order_id == sell and r.exec_type == "new"
                                  for r in ex.market_reports("BTC-USD")), TIMEOUT_S)
    buy = ex.send("BTC-USD", Place("alice", "buy", "limit", qty, price))
    assert wait_until(lambda: ex.settled_everything() and any(
        r.exec_type == "trade" and r.order_id == buy
        for r in ex.market_reports("BTC-USD")), TIMEOUT_S)
    assert wait_until(ex.settled_everything, TIMEOUT_S)
    got = ex.balances()
    units = ex.config.asset_units
    notional = 10_000 * 10 ** units["USD"]
    # Alice took: pays 0.2% on top; bob rested: gets 0.1% less; the fee account both.
    assert got["alice"]["USD"] == (100_000 * 10**6 - notional - notional * 2 // 1000, 0)
    assert got["alice"]["BTC"] == (5 * 10**4 + 5000, 0)
    assert got["bob"]["USD"] == (100_000 * 10**6 + notional - notional // 1000, 0)
    assert got["bob"]["BTC"] == (5 * 10**4 - 5000, 0)
    assert got["fees"]["USD"] == (notional * 3 // 1000, 0)
    assert sell != buy
    _assert_books_balance(ex)

    # More than alice has left: answered by the risk stage, never reaches the book.
    too_big = ex.send("BTC-USD", Place("alice", "buy", "limit", btc.parse_qty("10"), price))
    assert wait_until(lambda: any(
        isinstance(e, MarketAnswer) and e.event.order_id == too_big
        for e in ex.risk_events()), TIMEOUT_S)
    answer = next(e for e in ex.risk_events()
                  if isinstance(e, MarketAnswer) and e.event.order_id == too_big)
    assert isinstance(answer.event, Report)
    assert (answer.event.exec_type, answer.event.reason) == ("rejected", "INSUFFICIENT_FUNDS")
    assert wait_until(ex.settled_everything, TIMEOUT_S)
    assert all(r.order_id != too_big for r in ex.market_reports("BTC-USD"))

    # A resting buy holds its funds; the cancel gives them back.
    rest = ex.send("BTC-USD", Place("alice", "buy", "limit", btc.parse_qty("1"),
                                    btc.parse_price("1000")))
    hold = btc.buy_hold(btc.parse_price("1000"), btc.parse_qty("1"))
    before = got["alice"]["USD"][0]
    assert wait_until(lambda: ex.balances()["alice"]["USD"] == (before - hold, hold), TIMEOUT_S)
    ex.send("BTC-USD", Cancel("alice", order_id=rest))
    assert wait_until(lambda: ex.balances()["alice"]["USD"] == (before, 0), TIMEOUT_S)

    # A deposit ref applies once; a withdrawal above what is available is refused.
    ex.transfer(Deposit("carol", "ETH", 1000, "wire-1"))
    ex.transfer(Deposit("carol", "ETH", 1000, "wire-1"))
    ex.transfer(Withdraw("carol", "ETH", 10**12, "out-1"))
    assert wait_until(lambda: sum(isinstance(e, Transfer) and e.ref in ("wire-1", "out-1")
                                  for e in ex.risk_events()) == 3, TIMEOUT_S)
    statuses = [(e.ref, e.status) for e in ex.risk_events()
                if isinstance(e, Transfer) and e.ref in ("wire-1", "out-1")]
    assert statuses == [("wire-1", "applied"), ("wire-1", "duplicate"), ("out-1", "rejected")]
    assert ex.balances()["carol"]["ETH"] == (50 * 10**3 + 1000, 0)


def _progress(ex: Exchange) -> tuple[bytes | None, ...]:
    """Applied ids of every risk shard and market: changes whenever an engine commits."""
    names = [risk_keys(k).applied for k in range(SHARDS)]
    names += [f"sx:{{{m.symbol}}}:applied" for m in ex.config.markets]
    return tuple(ex.client.get(n) for n in names)


@pytest.fixture
def aof_exchange(tmp_path: Path) -> Iterator[tuple[Exchange, RedisServer]]:
    server = RedisServer(data_dir=tmp_path / "redis", aof=True, appendfsync="always",
                         die_with_parent=True)
    server.start()
    ex = Exchange(server.url, _write_config(tmp_path), tmp_path)
    ex.start_engine()
    for shard in range(SHARDS):
        ex.start_risk(shard)
    try:
        yield ex, server
    finally:
        ex.stop()
        server.stop()


def test_kill_minus_9_of_risk_and_market_engines_loses_and_doubles_nothing(
        aof_exchange: tuple[Exchange, RedisServer]) -> None:
    ex, server = aof_exchange
    assert wait_until(lambda: _funded(ex), TIMEOUT_S), ex.balances()
    listeners = ReportListeners(ex)
    try:
        _kill_and_check(ex, server, listeners)
    finally:
        listeners.close()


def _kill_and_check(ex: Exchange, server: RedisServer, listeners: ReportListeners) -> None:
    rng = random.Random(14)
    symbols = [m.symbol for m in ex.config.markets]
    open_ids: list[tuple[str, str, str]] = []
    placed: set[str] = set()
    kills = 0
    for round_no in range(14):
        before = _progress(ex)
        for _ in range(40):
            symbol = rng.choice(symbols)
            m = ex.market(symbol)
            account = rng.choice(ACCOUNTS)
            mid = 20_000 if symbol == "BTC-USD" else 1_500
            if rng.random() < 0.15 and open_ids:
                sym, acct, oid = open_ids.pop(rng.randrange(len(open_ids)))
                ex.send(sym, Cancel(acct, order_id=oid))
            elif rng.random() < 0.08:
                acct = rng.choice(ACCOUNTS)
                ref = f"r{round_no}-{rng.randrange(5)}"  # refs repeat: applied once each
                kind = Deposit if rng.random() < 0.6 else Withdraw
                for _ in range(rng.choice((1, 1, 2))):  # the same transfer sent again
                    ex.transfer(kind(acct, "USD", 10**6, ref))
            else:
                side = rng.choice(("buy", "sell"))
                price = m.parse_price(str(mid + rng.randint(-20, 20)))
                qty = m.parse_qty("0.01" if symbol == "BTC-USD" else "0.1") * rng.randint(1, 40)
                oid = ex.send(symbol, Place(account, side, "limit", qty, price))
                open_ids.append((symbol, account, oid))
                placed.add(oid)
        # Kill while the engines work on what was just sent (they have started on it).
        assert wait_until(lambda b=before: _progress(ex) != b, TIMEOUT_S)
        if round_no == 7:  # Redis itself, once: every acknowledged write is in its AOF
            server.kill()
            server.restart()
            ex.client.close()
            ex.client = redis.Redis.from_url(server.url)
        elif round_no % 3 == 2:
            assert ex.engine is not None
            ex.engine.kill()
            ex.start_engine()
            kills += 1
        else:
            shard = rng.randrange(SHARDS)
            ex.risk[shard].kill()
            ex.start_risk(shard)
            kills += 1
    assert kills >= 10
    assert wait_until(ex.settled_everything, TIMEOUT_S * 4)
    extra = _applied_deposits(ex)
    _assert_books_balance(ex, extra_usd=extra)
    # What the clients were pushed tells the same story: every order reached its account
    # with one first answer, and the fills they saw add up to the committed balances.
    assert wait_until(lambda: all(listeners.order_ids(a, ("new", "rejected"))
                                  == {r.order_id for s in symbols for r in ex.market_reports(s)
                                      if r.account == a and r.exec_type in ("new", "rejected")}
                                  | {e.event.order_id for e in ex.risk_events()
                                     if isinstance(e, MarketAnswer) and e.event.account == a}
                                  for a in ACCOUNTS), TIMEOUT_S)
    trades_out = sum(1 for s in symbols for r in ex.market_reports(s) if r.exec_type == "trade")
    assert trades_out > 50
    assert wait_until(lambda: sum(len([r for r in rs if r.exec_type == "trade"])
                                  for rs in listeners.reports.values()) == trades_out, TIMEOUT_S)
    received = _received_totals(ex, listeners)
    got = ex.balances()
    for account in ACCOUNTS:
        for asset, total in received[account].items():
            total += extra.get(account, {}).get(asset, 0)
            assert sum(got.get(account, {}).get(asset, (0, 0))) == total, (account, asset)
    refused_seen = {r.order_id for rs in listeners.reports.values() for r in rs
                    if r.reason == "INSUFFICIENT_FUNDS"}
    filled_seen = {r.order_id for rs in listeners.reports.values() for r in rs
                   if r.exec_type == "trade"}
    assert not refused_seen & filled_seen
    # Nothing was both refused for funds and filled.
    refused = {e.event.order_id for e in ex.risk_events() if isinstance(e, MarketAnswer)}
    filled = {r.order_id for s in symbols for r in ex.market_reports(s)
              if r.exec_type == "trade"}
    assert not refused & filled
    # Every place reached its market exactly once (one new-or-rejected report), unless the
    # risk stage refused it.
    reached: list[str] = []
    for s in symbols:
        reached += [r.order_id for r in ex.market_reports(s)
                    if r.exec_type in ("new", "rejected")]
    assert len(reached) == len(set(reached))
    assert set(reached) | refused == placed
    assert not set(reached) & refused
    # Both kinds of transfer were applied, and some refused as duplicates.
    transfers = [e for e in ex.risk_events() if isinstance(e, Transfer)
                 and not e.ref.startswith("initial:")]
    assert {(e.direction, e.status) for e in transfers} >= {
        ("deposit", "applied"), ("withdraw", "applied"), ("deposit", "duplicate")}
    # A clean replay of the retained streams gives the same books (streamex admin audit).
    code, out = _admin(ex, "audit")
    assert code == 0 and json.loads(out)["ok"], out
    # The kills hit work in flight: some recoveries replayed entries.
    logs = "".join(p.log() for p in ex.risk.values())
    assert re.search(r"event=recovered .*replayed=[1-9]", logs)


def _applied_deposits(ex: Exchange) -> dict[str, dict[str, int]]:
    """Deposits minus withdrawals applied per account (each ref once), from the risk
    stage's answers."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: set[tuple[str, str]] = set()
    for e in ex.risk_events():
        if isinstance(e, Transfer) and e.status == "applied" \
                and not e.ref.startswith("initial:"):
            assert (e.account, e.ref) not in seen, f"transfer {e.ref} applied twice"
            seen.add((e.account, e.ref))
            sign = 1 if e.direction == "deposit" else -1
            out[e.account][e.asset] += sign * e.amount
    return out


def test_over_spend_race_accepts_only_what_fits(exchange: Exchange) -> None:
    ex = exchange
    assert wait_until(lambda: _funded(ex), TIMEOUT_S)
    eth = ex.market("ETH-USD")
    price = eth.parse_price("999")  # rests: nobody sells
    qty = eth.parse_qty("9")
    hold = eth.buy_hold(price, qty)  # ~9,004.5 USD of 100,000: 11 fit, 29 do not
    ids = [ex.send("ETH-USD", Place("dave", "buy", "limit", qty, price)) for _ in range(40)]
    assert wait_until(ex.settled_everything, TIMEOUT_S)
    assert wait_until(lambda: sum(r.exec_type == "new" for r in ex.market_reports("ETH-USD"))
                      + sum(isinstance(e, MarketAnswer) for e in ex.risk_events()) == 40,
                      TIMEOUT_S)
    refused = [e.event.order_id for e in ex.risk_events() if isinstance(e, MarketAnswer)]
    accepted = [r.order_id for r in ex.market_reports("ETH-USD") if r.exec_type == "new"]
    fit = 100_000 * 10**6 // hold
    assert accepted == ids[:fit] and refused == ids[fit:]
    available, held = ex.balances()["dave"]["USD"]
    assert held == fit * hold and available == 100_000 * 10**6 - fit * hold >= 0


def test_a_paused_risk_engine_writes_nothing_after_the_takeover(exchange: Exchange) -> None:
    ex = exchange
    assert wait_until(lambda: _funded(ex), TIMEOUT_S)
    shard = risk_shard("bob", SHARDS)
    keys = risk_keys(shard)
    standby = StreamexProcess(
        ["risk", "--config", str(ex.config_path), "--redis-url", ex.url, "--shards",
         str(shard), "--consumer", "standby", "--stats-interval", "1"],
        ex.log_dir / "standby.log").start()
    try:
        btc = ex.market("BTC-USD")
        first = ex.send("BTC-USD", Place("bob", "sell", "limit", btc.parse_qty("1"),
                                         btc.parse_price("30000")))
        assert wait_until(lambda: any(r.order_id == first
                                      for r in ex.market_reports("BTC-USD")), TIMEOUT_S)
        zombie = ex.risk[shard]
        epoch = int(ex.client.get(keys.epoch) or 0)
        zombie.signal(signal.SIGSTOP)
        assert wait_until(lambda: int(ex.client.get(keys.epoch) or 0) > epoch, TIMEOUT_S)
        out_len = ex.client.xlen(keys.output)
        # The new owner serves; then the zombie wakes and is fenced.
        second = ex.send("BTC-USD", Place("bob", "sell", "limit", btc.parse_qty("1"),
                                          btc.parse_price("30001")))
        assert wait_until(lambda: any(r.order_id == second
                                      for r in ex.market_reports("BTC-USD")), TIMEOUT_S)
        assert wait_until(lambda: ex.client.xlen(keys.output) > out_len, TIMEOUT_S)
        owner_entries = ex.client.xrange(keys.output)
        zombie.signal(signal.SIGCONT)
        assert zombie.wait() == 3  # EXIT_FENCED
        ex.send("BTC-USD", Cancel("bob", order_id=second))
        assert wait_until(ex.settled_everything, TIMEOUT_S)
        # Seqs stay contiguous: nothing the zombie had applied was published after.
        entries = ex.client.xrange(keys.output)
        assert entries[:len(owner_entries)] == owner_entries
        seqs = [e.seq for _, f in entries for e in decode_risk_events(f[OUT_EVENTS_FIELD])]
        assert seqs == list(range(1, len(seqs) + 1))
        _assert_books_balance(ex)
    finally:
        standby.kill()


def _admin(ex: Exchange, *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "streamex", "admin", *args, "--config",
                           str(ex.config_path), "--redis-url", ex.url],
                          capture_output=True, text=True, timeout=TIMEOUT_S * 2, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_admin_transfers_are_idempotent_and_the_audit_checks_the_books(
        exchange: Exchange) -> None:
    ex = exchange
    assert wait_until(lambda: _funded(ex), TIMEOUT_S)
    code, out = _admin(ex, "deposit", "--account", "carol", "--asset", "BTC", "--amount",
                       "1.5", "--ref", "wire-7")
    assert code == 0 and json.loads(out)["status"] == "applied", out
    code, out = _admin(ex, "deposit", "--account", "carol", "--asset", "BTC", "--amount",
                       "1.5", "--ref", "wire-7")
    assert code == 0 and json.loads(out)["status"] == "duplicate", out
    code, out = _admin(ex, "withdraw", "--account", "carol", "--asset", "BTC", "--amount",
                       "100", "--ref", "out-7")
    assert code == 1 and json.loads(out) == {
        "status": "rejected", "reason": "INSUFFICIENT_FUNDS", "ref": "out-7",
        "account": "carol", "asset": "BTC", "direction": "withdraw",
        "amount": "100.0000"}, out
    code, out = _admin(ex, "deposit", "--account", "carol", "--asset", "DOGE", "--amount",
                       "1", "--ref", "x")
    assert code == 2 and "no market trades 'DOGE'" in out
    code, out = _admin(ex, "balances", "--account", "carol")
    assert code == 0 and json.loads(out)["carol"]["BTC"] == {"available": "6.5000",
                                                             "held": "0.0000"}, out
    # Some trading, then the audit replays everything and finds the books right.
    btc = ex.market("BTC-USD")
    sell = ex.send("BTC-USD", Place("bob", "sell", "limit", btc.parse_qty("0.3"),
                                    btc.parse_price("25000")))
    assert wait_until(lambda: any(r.order_id == sell for r in ex.market_reports("BTC-USD")),
                      TIMEOUT_S)
    ex.send("BTC-USD", Place("carol", "buy", "limit", btc.parse_qty("0.5"),
                             btc.parse_price("25000")))
    assert wait_until(lambda: ex.settled_everything() and any(
        r.exec_type == "trade" for r in ex.market_reports("BTC-USD")), TIMEOUT_S)
    code, out = _admin(ex, "audit")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["fills_checked"], out
    # An undecodable entry changes nothing; a published balance the input does not imply
    # (a corrupted :out) is found.
    shard = risk_shard("dave", SHARDS)
    ex.client.xadd(risk_keys(shard).input, {IN_FIELD: b"\x93junk"})
    assert wait_until(ex.settled_everything, TIMEOUT_S)
    code, out = _admin(ex, "audit")
    assert code == 0 and json.loads(out)["ok"], out
    ex.client.xadd(risk_keys(shard).output, {OUT_EVENTS_FIELD: encode_risk_events(
        [Balance(10**6, 0, "dave", "USD", 1, 0)])})
    code, out = _admin(ex, "audit")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert any(p.startswith("dave USD: committed (1, 0)") for p in report["problems"]), out


def test_the_settler_copies_every_report_but_new_ones() -> None:
    """A ``new`` report changes no balance (the hold was taken on acceptance): an entry
    with nothing else for the shard gives no ``Settle``, one with fills gives them all."""
    market = DEFAULT_MARKETS[0]
    book = OrderBook(market)
    resting = book.apply("1-0", Place("alice", "sell", "limit", 3, 10_000))
    crossing = book.apply("2-0", Place("bob", "buy", "limit", 5, 10_000))
    canceled = book.apply("3-0", Cancel("bob", "2-0"))
    entries = [(b"%d-0" % (i + 1), [OUT_EVENTS_FIELD, encode_events(events)])
               for i, events in enumerate((resting, crossing, canceled))]
    copied = [decode_risk_command(c) for shard in (0, 1)
              for c in settle_commands(market.symbol, entries, shard, 2)]
    reports = [(e.account, e.exec_type) for cmd in copied
               if isinstance(cmd, Settle) for e in cmd.events if isinstance(e, Report)]
    assert sorted(reports) == [("alice", "trade"), ("bob", "canceled"), ("bob", "trade")]
    assert all(isinstance(cmd, Settle) and cmd.out_id in ("2-0", "3-0") for cmd in copied)

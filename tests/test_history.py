"""``streamex history`` end to end: real Redis, market and risk engines, history processes.

Orders enter the risk shards' input streams as the gateway writes them; the
engines match and settle them; ``streamex history`` (a real subprocess)
copies every ``:out`` into SQLite or a real PostgreSQL (``pg_helpers``), and
the database is compared with the events read back from the streams, with
``candles.core`` over the same trades, and with an uninterrupted in-process
run over the same streams after ``kill -9`` at random moments and a second
writer on the same database. A stream trimmed past history's position gives
a ``gaps`` row and a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from gateway_helpers import EngineGroup
from pg_helpers import PostgresServer, dump_tables
from streamex_process import StreamexProcess
from timing import TIMEOUT_S, scaled, wait_until

from candles.core import INTERVALS, Candle, CandleSeries
from contract.commands import Amend, Cancel, Command, OrderType, Place, Side, Tif, encode_command
from contract.events import CancelRejected, Report, Trade, decode_events
from contract.ids import order_number, stage_order_id, ts_of
from contract.keys import applied_key, in_stream, lease_key, out_stream
from contract.market import Market
from contract.risk import (
    Balance,
    Deposit,
    MarketAnswer,
    RiskCommand,
    ToMarket,
    Transfer,
    Withdraw,
    decode_risk_events,
    encode_risk_command,
    positions_key,
    risk_keys,
    risk_shard,
    risk_tag,
)
from contract.settings import Config
from contract.streams import IN_FIELD, OUT_EVENTS_FIELD
from history.service import HistoryService
from redisio.topology import Topology
from store.db import Store, open_store
from store.rows import OrderRow
from streamex.config import load_config
from streamex.redis_cluster import LocalCluster
from streamex.redis_server import RedisServer
from streamex.risk_cmd import initial_deposits

pytest_plugins = ("pg_helpers",)

SHARDS = 2
TRADERS = ("t0", "t1", "t2", "t3", "t4", "t5")
POOR = "poor"
FUNDS = {"USD": "100000000", "BTC": "10000", "ETH": "100000"}
POOR_FUNDS = {"USD": "25", "BTC": "0.001", "ETH": "0.01"}
MIDS = {"BTC-USD": 5_000_000, "ETH-USD": 300_000}

MARKETS = """
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


def write_config(directory: Path, *, risk: bool = True, cluster: bool = False,
                 eth: bool = True) -> Path:
    text = ("[redis]\ncluster = true\n\n" if cluster else "") + (
            f"[risk]\nenabled = {'true' if risk else 'false'}\nshards = {SHARDS}\n\n"
            "[engine]\nsnapshot_every = 2000\nlease_ms = 1500\nblock_ms = 100\n\n"
            "[history]\nbatch_entries = 500\n"
            + (MARKETS if eth else MARKETS[:MARKETS.index("[[markets]]", 10)]))
    for name in (*TRADERS, POOR):
        funds = ", ".join(f'{a} = "{v}"' for a, v in (POOR_FUNDS if name == POOR
                                                      else FUNDS).items() if eth or a != "ETH")
        text += (f'\n[[accounts]]\nid = "{name}"\napi_key = "{name}-key"\n'
                 f'secret = "{name}-secret-0123456789"\nbalances = {{ {funds} }}\n')
    path = directory / "streamex.toml"
    path.write_text(text)
    return path


# -- the order flow --------------------------------------------------------------------


class Flow:
    """A seeded order flow for the risk shards, XADDed as the gateway writes it (``*`` ids:
    the settlers XADD into the same streams) in chunks, each chunk's orders known to the
    next: limit orders around a walking mid (about one in six crosses), IOC and market
    orders (market buys by budget), cancels and amends of earlier orders (some already
    done: cancel rejects), client order ids, an underfunded account (INSUFFICIENT_FUNDS
    rejects) and deposits/withdrawals (a duplicate ref, a refused withdrawal); and
    section B's orders: stops and take-profits (limit and market) around the mid, some
    triggered at once, some by later trades, some never; GTD limit orders expiring
    within two seconds (some expire resting); icebergs."""

    def __init__(self, config: Config, seed: int) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.mids = {m.symbol: MIDS[m.symbol] for m in config.markets}
        self.placed: dict[str, list[tuple[str, str]]] = {s: [] for s in self.mids}
        self.sent = 0

    def xadd(self, client: Any, n: int) -> None:
        """Send the next ``n`` commands in one pipeline."""
        commands = [self._next() for _ in range(n)]
        pipe = client.pipeline(transaction=False)
        for shard, cmd, _ in commands:
            pipe.xadd(risk_keys(shard).input, {IN_FIELD: encode_risk_command(cmd)})
        for (shard, cmd, symbol), entry_id in zip(commands, pipe.execute(), strict=True):
            if symbol is not None:
                assert isinstance(cmd, ToMarket)
                self.placed[symbol].append((cmd.command.account,
                                            stage_order_id(entry_id, shard)))

    def _next(self) -> tuple[int, RiskCommand, str | None]:
        """(shard, command, symbol of a resting order it places or None)."""
        rng = self.rng
        i = self.sent
        self.sent += 1
        if i % 1500 == 700:
            account = rng.choice(TRADERS)
            transfer: RiskCommand = (
                Deposit(account, "USD", 10**9, f"top-up-{i // 3000}")  # a ref seen twice
                if i % 3000 == 700 else Withdraw(account, "BTC", 10**15, f"w{i}"))  # refused
            return risk_shard(account, SHARDS), transfer, None
        symbol = "BTC-USD" if rng.random() < 0.7 or len(self.mids) == 1 else "ETH-USD"
        market = self.config.market(symbol)
        if rng.random() < 0.01:
            self.mids[symbol] += rng.choice((-1, 1))
        mid = self.mids[symbol]
        placed = self.placed[symbol]
        account = POOR if rng.random() < 0.03 else rng.choice(TRADERS)
        r = rng.random()
        cmd: Command
        resting = False
        if r < 0.28 and placed:
            account, oid = placed[rng.randrange(len(placed))]
            cmd = Cancel(account, order_id=oid)
        elif r < 0.34 and placed:
            account, oid = placed[rng.randrange(len(placed))]
            cmd = (Amend(account, order_id=oid, price=mid + rng.randint(-4, 4))
                   if rng.random() < 0.5 else
                   Amend(account, order_id=oid, qty=rng.randint(1, 9) * market.min_lots))
        elif r < 0.38:
            qty = market.min_lots * rng.randint(1, 30)
            cmd = (Place(account, "sell", "market", qty) if rng.random() < 0.5 else
                   Place(account, "buy", "market", 0,
                         quote_qty=market.buy_hold(mid + 10, qty)))
        elif r < 0.43:
            cmd = self._stop(account, market, mid)
            resting = True  # until it triggers: a cancel or amend may find it
        else:
            buy = rng.random() < 0.5
            offset = rng.randint(0, 8) if r < 0.92 else -rng.randint(0, 3)  # some cross
            lots = rng.randint(1, 40) if account != POOR else 10**5
            qty = market.min_lots * lots
            ioc = r < 0.47
            tif: Tif = "IOC" if ioc else "GTD" if rng.random() < 0.1 else "GTC"
            expire_time = time.time_ns() // 1_000_000 + rng.randint(50, 2000) \
                if tif == "GTD" else 0
            display = market.min_lots * max(1, lots // 4) \
                if not ioc and rng.random() < 0.1 else 0
            cmd = Place(account, "buy" if buy else "sell", "limit", qty,
                        mid - offset if buy else mid + offset, tif=tif,
                        client_order_id=f"c{i}" if rng.random() < 0.5 else None,
                        expire_time=expire_time, display_qty=display)
            resting = not ioc
        return risk_shard(account, SHARDS), ToMarket(symbol, cmd), symbol if resting else None

    def _stop(self, account: str, market: Market, mid: int) -> Place:
        """A stop or take-profit whose trigger is a few ticks either side of the mid (so
        some are met at once, some by later trades, some never); a market buy by budget."""
        rng = self.rng
        kind: OrderType = rng.choice(("stop_limit", "stop_market", "take_profit_limit",
                                      "take_profit_market"))
        side: Side = rng.choice(("buy", "sell"))
        stop_price = mid + rng.randint(-6, 6)
        qty = market.min_lots * rng.randint(1, 20)
        if kind.endswith("_limit"):
            limit = stop_price + (3 if side == "buy" else -3)
            return Place(account, side, kind, qty, limit, stop_price=stop_price)
        if side == "buy":
            return Place(account, side, kind, 0, 0, "IOC",
                         quote_qty=market.buy_hold(mid + 10, qty), stop_price=stop_price)
        return Place(account, side, kind, qty, 0, "IOC", stop_price=stop_price)


def fund(client: Any, config: Config) -> None:
    """The accounts' initial deposits (as ``streamex risk`` adds them: same refs, once)."""
    for k in range(config.risk.shards):
        for deposit in initial_deposits(config, k):
            client.xadd(risk_keys(k).input, {IN_FIELD: encode_risk_command(deposit)})


# -- an exchange: Redis, engines, streams --------------------------------------------------


def _last_id(client: Any, key: str) -> bytes | None:
    last = client.xrevrange(key, count=1)
    return last[0][0] if last else None


@dataclass
class Exchange:
    """A Redis server (or cluster) with ``streamex engine`` and ``streamex risk`` serving it."""

    url: str
    cluster: bool
    config_path: Path
    config: Config
    engines: EngineGroup
    client: Any = field(init=False)
    """redis-py's client (``RedisCluster`` on a cluster)."""

    def __post_init__(self) -> None:
        self.client = (redis.cluster.RedisCluster.from_url(self.url) if self.cluster
                       else redis.Redis.from_url(self.url))

    @property
    def symbols(self) -> list[str]:
        return [m.symbol for m in self.config.markets]

    @property
    def shards(self) -> list[int]:
        return list(range(self.config.risk.shards)) if self.config.risk.enabled else []

    def streams(self) -> dict[str, str]:
        """Stream name in the database -> its ``:out`` key."""
        out = {s: out_stream(s) for s in self.symbols}
        out.update({risk_tag(k): risk_keys(k).output for k in self.shards})
        return out

    def settled(self) -> bool:
        """Every engine applied all its input and every shard settled every market."""
        c = self.client
        for k in self.shards:
            keys = risk_keys(k)
            last = _last_id(c, keys.input)
            if last is not None and c.get(keys.applied) != last:
                return False
        for s in self.symbols:
            last = _last_id(c, in_stream(s))
            if last is not None and c.get(applied_key(s)) != last:
                return False
            out = _last_id(c, out_stream(s))
            for k in self.shards:
                if out is not None and c.hget(positions_key(k), s) != out:
                    return False
        return True

    def gtd_open(self) -> bool:
        """A GTD order is still open: its engine will append a clock entry when it is due
        (so the streams move on by themselves until then)."""
        open_gtd: set[tuple[str, str]] = set()
        for symbol in self.symbols:
            for _, fields in self.entries(out_stream(symbol)):
                for e in decode_events(fields[OUT_EVENTS_FIELD]):
                    if isinstance(e, Report) and e.expire_time:
                        if e.status in ("new", "partially_filled", "untriggered"):
                            open_gtd.add((symbol, e.order_id))
                        else:
                            open_gtd.discard((symbol, e.order_id))
        return bool(open_gtd)

    def wait_settled(self) -> None:
        """Until every engine and shard applied everything, and no GTD order is left to
        expire (the last clock entries are in)."""
        wait_until(lambda: self.settled() and not self.gtd_open() and self.settled(),
                   TIMEOUT_S * 2, "engines settled", poll_s=0.05)

    def caught_up(self, store: Store) -> bool:
        """``store`` holds every entry of every stream."""
        for name, key in self.streams().items():
            last = _last_id(self.client, key)
            position = store.position(name)
            if last is not None and (position is None or position[0] != last.decode()):
                return False
        return True

    def entries(self, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        return self.client.xrange(key)  # type: ignore[no-any-return]

    def history(self, db_url: str, log_path: Path) -> StreamexProcess:
        return StreamexProcess(["history", "--config", str(self.config_path), "--redis-url",
                                self.url, "--db", db_url, "--stats-interval", "1"], log_path)

    def close(self) -> None:
        self.engines.kill()
        self.client.close()


@contextlib.contextmanager
def running_exchange(directory: Path, *, risk: bool = True, cluster: LocalCluster | None = None,
                     eth: bool = True) -> Iterator[Exchange]:
    """A fresh Redis (or ``cluster``) with the engines of ``write_config(directory)`` running
    (the accounts funded)."""
    with contextlib.ExitStack() as stack:
        if cluster is None:
            server = stack.enter_context(RedisServer(data_dir=directory / "redis",
                                                     die_with_parent=True))
            url = server.url
        else:
            url = cluster.url
        config_path = write_config(directory, risk=risk, cluster=cluster is not None, eth=eth)
        config = load_config(config_path)
        ex = Exchange(url, cluster is not None, config_path, config,
                      EngineGroup(config_path, url, directory / "engine.log"))
        stack.callback(ex.close)
        if risk:
            fund(ex.client, ex.config)
        ex.engines.start()
        # Every engine holds its lease: streamex risk added its initial deposits before.
        tags = [*ex.symbols, *(risk_tag(k) for k in ex.shards)]
        wait_until(lambda: all(ex.client.exists(lease_key(t)) for t in tags), TIMEOUT_S,
                   "the engines to take their leases", poll_s=0.05)
        yield ex


def ingest(ex: Exchange, db_url: str) -> None:
    """An uninterrupted in-process run of the history service over ``ex``'s streams, until
    the database holds every entry."""

    async def main() -> None:
        with open_store(db_url) as store:
            topology = Topology([ex.url], cluster=ex.cluster)
            await topology.initialize()
            service = HistoryService(store, topology, ex.symbols, ex.shards,
                                     batch_entries=ex.config.history.batch_entries)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            try:
                deadline = time.monotonic() + TIMEOUT_S * 2
                while not await asyncio.to_thread(ex.caught_up, store):
                    assert not task.done(), "the history service stopped"
                    assert time.monotonic() < deadline, "history did not catch up"
                    await asyncio.sleep(0.02)
            finally:
                stop.set()
                await task
                await topology.aclose()

    asyncio.run(main())


def other_database(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A second, empty database on the engine of ``db_url``."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.database()


def wait_log(proc: StreamexProcess, text: str, timeout_s: float = TIMEOUT_S) -> None:
    def seen() -> bool:
        assert proc.running(), f"history exited:\n{proc.log()}"
        return text in proc.log()

    wait_until(seen, timeout_s, repr(text))


# -- what the streams say ----------------------------------------------------------------


@dataclass
class Published:
    """Every event of every stream of an exchange, in stream order."""

    market: dict[str, list[Any]]
    risk: dict[int, list[Any]]

    @classmethod
    def read(cls, ex: Exchange) -> Published:
        market = {s: [e for _, f in ex.entries(out_stream(s)) for e in
                      decode_events(f[OUT_EVENTS_FIELD])] for s in ex.symbols}
        risk = {k: [e for _, f in ex.entries(risk_keys(k).output) for e in
                    decode_risk_events(f[OUT_EVENTS_FIELD])] for k in ex.shards}
        return cls(market, risk)

    def reports(self) -> list[tuple[str, str, Report | CancelRejected]]:
        """(stream, symbol, report) of every execution report and cancel reject."""
        out: list[tuple[str, str, Report | CancelRejected]] = []
        for symbol, events in self.market.items():
            out += [(symbol, symbol, e) for e in events if isinstance(e, Report | CancelRejected)]
        for k, events in self.risk.items():
            out += [(risk_tag(k), e.symbol, e.event) for e in events
                    if isinstance(e, MarketAnswer)]
        return out

    def orders(self) -> dict[tuple[str, str], OrderRow]:
        """Each order's row computed from its reports alone."""
        out: dict[tuple[str, str], OrderRow] = {}
        for _, symbol, r in self.reports():
            if not isinstance(r, Report):
                continue
            key = (symbol, r.order_id)
            before = out.get(key)
            fee = r.fee + (before.fee if before else 0)
            working = before.working_ts if before else None
            if working is None and r.exec_type == "new":
                working = r.ts
            triggered = before.trigger_ts if before else None
            if triggered is None and r.exec_type == "triggered":
                triggered = r.ts
            reason = r.reason if r.reason is not None else (before.reason if before else None)
            out[key] = OrderRow(symbol, r.order_id, order_number(r.order_id), r.account,
                                r.client_order_id, r.side, r.type, r.tif, r.price, r.qty, None,
                                r.status, r.cum_qty, r.cum_notional, fee, reason,
                                ts_of(r.order_id), working, r.ts, r.seq, r.stop_price,
                                r.expire_time, r.display_qty, triggered)
        return out


def check_against_events(store: Store, ex: Exchange, db_url: str) -> None:
    """Every table of ``store`` equals what the streams published."""
    pub = Published.read(ex)
    tables = dump_tables(db_url)
    want_exec = []
    for stream, symbol, r in pub.reports():
        if isinstance(r, CancelRejected):
            want_exec.append((stream, r.seq, symbol, r.ts, r.account, r.order_id,
                              r.client_order_id, "cancel_rejected", None, None, 0, 0, 0, 0, 0,
                              0, "0", None, None, "0", r.reason))
        else:
            want_exec.append((stream, r.seq, symbol, r.ts, r.account, r.order_id,
                              r.client_order_id, r.exec_type, r.status, r.side, r.price, r.qty,
                              r.last_qty, r.last_price, r.cum_qty, r.leaves_qty,
                              str(r.cum_notional), r.liquidity, r.trade_id, str(r.fee),
                              r.reason))
    assert tables["executions"] == sorted(want_exec, key=lambda row: (row[0], row[1]))
    kinds = {row[7] for row in want_exec}
    assert kinds >= {"new", "trade", "canceled", "expired", "rejected", "replaced",
                     "cancel_rejected", "triggered"}, kinds

    orders = pub.orders()
    assert any(o.reason == "INSUFFICIENT_FUNDS" for o in orders.values())
    # section B's orders are there: triggered stops, untriggered ones still open, GTD
    # orders the engine expired, icebergs
    assert any(o.trigger_ts is not None for o in orders.values())
    assert any(o.status == "untriggered" for o in orders.values())
    assert any(o.reason == "EXPIRED" and o.tif == "GTD" for o in orders.values())
    assert any(o.display_qty for o in orders.values())
    assert sum(o.fee for o in orders.values()) > 0
    accounts = {o.account for o in orders.values()}
    for symbol in ex.symbols:
        for account in accounts:
            mine = sorted((o for o in orders.values() if o.symbol == symbol
                           and o.account == account), key=lambda o: o.order_number or 0)
            assert store.orders(symbol, account, from_number=0, limit=10**6) == mine
            assert store.open_orders(symbol, account) == [
                o for o in mine if o.status in ("new", "partially_filled", "untriggered")]
            fills = [(r.trade_id, r.seq) for _, sym, r in pub.reports()
                     if sym == symbol and isinstance(r, Report) and r.account == account
                     and r.trade_id is not None]
            got = store.my_trades(symbol, account, from_trade_id=0, limit=10**6)
            assert [(f.trade_id, f.seq) for f in got] == sorted(fills)

    for symbol, events in pub.market.items():
        trades = [e for e in events if isinstance(e, Trade)]
        got_trades = store.trades(symbol, from_trade_id=0, limit=10**6)
        assert [(t.trade_id, t.seq, t.ts, t.price, t.qty, t.taker_side, t.maker_order_id,
                 t.taker_order_id) for t in got_trades] == [
            (t.trade_id, t.seq, t.ts, t.price, t.qty, t.taker_side, t.maker_order_id,
             t.taker_order_id) for t in trades]
        check_candles(store, symbol, trades)

    balances: dict[tuple[str, str, int], Balance] = {}
    changes = transfers = 0
    statuses = set()
    for shard, events in pub.risk.items():
        for e in events:
            if isinstance(e, Balance):
                balances[(e.account, e.asset, shard)] = e
                changes += 1
            elif isinstance(e, Transfer):
                transfers += 1
                statuses.add(e.status)
    assert statuses == {"applied", "duplicate", "rejected"}
    assert len(tables["balance_changes"]) == changes
    assert len(tables["transfers"]) == transfers
    assert len(tables["balances"]) == len(balances)
    assert {(r[1], r[2], r[0]): (int(r[3]), int(r[4]), r[5]) for r in tables["balances"]} == {
        k: (b.available, b.held, b.seq) for k, b in balances.items()}
    fee_shards = {shard for (a, _, shard) in balances if a == ex.config.risk.fee_account}
    assert fee_shards == set(ex.shards)  # every shard credits its own fee row
    for account in {a for a, _, _ in balances}:
        totals: dict[str, list[int]] = {}
        for (a, asset, _), b in balances.items():
            if a == account:
                total = totals.setdefault(asset, [0, 0])
                total[0] += b.available
                total[1] += b.held
        assert [(b.asset, b.available, b.held) for b in store.balances(account)] == sorted(
            (asset, avail, held) for asset, (avail, held) in totals.items())
    assert store.gaps() == []


def check_candles(store: Store, symbol: str, trades: list[Trade]) -> None:
    """The database's candles equal ``candles.core`` over the same trades, every interval."""
    for interval, width in INTERVALS.items():
        series = CandleSeries(width, keep=10**6)
        for t in trades:
            series.add(t.ts, t.price, t.qty)
        want = series.last(10**6)
        got = store.klines(symbol, interval, start_ms=0, limit=10**6)

        def numbers(c: Candle) -> tuple[int, ...]:
            return (c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume,
                    c.quote_volume, c.trades)

        assert [numbers(c) for c in got] == [numbers(c) for c in want], (symbol, interval)
        assert all(c.closed for c in got[:-1])


# -- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """An exchange that has matched and settled a 4,000-command flow."""
    with running_exchange(tmp_path_factory.mktemp("flow")) as ex:
        flow = Flow(ex.config, seed=11)
        for _ in range(8):
            flow.xadd(ex.client, 500)
        ex.wait_settled()
        yield ex


def test_the_flow_lands_as_the_events_say(flow_exchange: Exchange, db_url: str,
                                          tmp_path: Path) -> None:
    ex = flow_exchange
    proc = ex.history(db_url, tmp_path / "history.log").start()
    try:
        wait_log(proc, "event=ready service=history")
        with open_store(db_url) as store:
            assert ex.caught_up(store)  # ready: everything that was there is written
            check_against_events(store, ex, db_url)
            # a few REST paths on real data
            (symbol, order_id), order = next(
                (k, o) for k, o in Published.read(ex).orders().items()
                if o.client_order_id and o.status == "filled")
            assert order.order_number is not None
            assert store.order(symbol, order.account, order_number=order.order_number) == order
            assert store.order(symbol, order.account, order_id=order_id) == order
            assert store.order(symbol, order.account,
                               client_order_id=order.client_order_id) == order
    finally:
        code = proc.stop()
    assert code == 0, proc.log()


def _progress(store: Store, streams: list[str]) -> int:
    """Events written so far over ``streams`` (their last seqs summed)."""
    return sum((store.position(s) or ("", 0))[1] for s in streams)


def _feed(ex: Exchange, flow: Flow, n: int, per_s: float,
          stop: threading.Event | None = None, at_least: int = 0) -> threading.Thread:
    """Send ``n`` commands of ``flow`` at about ``per_s`` a second, in a thread (fewer if
    ``stop`` is set, but at least ``at_least``)."""

    def run() -> None:
        client = (redis.cluster.RedisCluster.from_url(ex.url) if ex.cluster
                  else redis.Redis.from_url(ex.url))
        chunk = max(1, int(per_s / 20))
        started = time.monotonic()
        try:
            for i in range(0, n, chunk):
                if stop is not None and i >= at_least and stop.is_set():
                    break
                flow.xadd(client, min(chunk, n - i))
                ahead = started + (i + chunk) / per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not waiting for anything
        finally:
            client.close()

    thread = threading.Thread(target=run, name="feed", daemon=True)
    thread.start()
    return thread


def test_kill_9_at_random_moments_loses_and_doubles_nothing(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rng = random.Random(2026)
    with running_exchange(tmp_path) as ex, open_store(db_url) as store:
        ex.wait_settled()  # the initial deposits
        proc = ex.history(db_url, tmp_path / "history-0.log").start()
        started = [proc]
        # Fed until the kills are done (at most ~60 s), so each kill meets work in flight
        # however long a restarted writer takes to start; 20,000 commands at least.
        fed = threading.Event()
        feeder = _feed(ex, Flow(ex.config, seed=5), 120_000, per_s=2000, stop=fed,
                       at_least=20_000)
        streams = list(ex.streams())
        kills = 0
        try:
            while kills < 8:
                before = _progress(store, streams)
                wait_until(lambda before=before: _progress(store, streams) > before or (
                    not feeder.is_alive() and ex.settled() and ex.caught_up(store)),
                    TIMEOUT_S * 2, "history to write something")
                if _progress(store, streams) == before:
                    break  # all written: nothing left to interrupt
                time.sleep(rng.uniform(0, scaled(0.15)))  # a random moment of the work
                proc.kill()
                kills += 1
                proc = ex.history(db_url, tmp_path / f"history-{kills}.log").start()
                started.append(proc)
            fed.set()
            feeder.join(TIMEOUT_S)
            ex.wait_settled()
            wait_until(lambda: ex.caught_up(store), TIMEOUT_S * 2, "history caught up")
            wait_log(proc, "event=ready")  # running: SIGTERM now is a clean stop
        finally:
            code = proc.stop()
        assert code == 0, proc.log()
        resumed = [line for p in started for line in p.log().splitlines()
                   if "event=resumed" in line]
        assert kills >= 4 and len(resumed) == kills + 1  # every kill hit a running writer
        assert sum("positions=none" not in line for line in resumed) >= 4  # resumed mid-way
        reference = other_database(db_url, request, tmp_path)
        ingest(ex, reference)
        got, want = dump_tables(db_url), dump_tables(reference)
        for table in want:
            assert got[table] == want[table], table
        assert len(want["orders"]) > 8_000 and len(want["trades"]) > 500


def test_a_second_writer_on_the_same_database_writes_nothing_twice(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with running_exchange(tmp_path) as ex, open_store(db_url) as store:
        ex.wait_settled()
        first = ex.history(db_url, tmp_path / "first.log").start()
        second = ex.history(db_url, tmp_path / "second.log").start()
        try:
            wait_log(first, "event=resumed")
            wait_log(second, "event=resumed")
            _feed(ex, Flow(ex.config, seed=9), 8000, per_s=8000).join(TIMEOUT_S)
            ex.wait_settled()
            wait_until(lambda: ex.caught_up(store), TIMEOUT_S * 2, "history caught up")
        finally:
            codes = (first.stop(), second.stop())
        assert codes == (0, 0), first.log() + second.log()
        logs = first.log() + second.log()
        assert "event=position_conflict" in logs  # they did race
        assert "event=db_error" not in logs  # and no insert ever hit a duplicate
        reference = other_database(db_url, request, tmp_path)
        ingest(ex, reference)
        assert dump_tables(db_url) == dump_tables(reference)


DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def spaced_exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """A matching venue (no risk stage) whose trades span ~6 hours across a UTC midnight."""
    with running_exchange(tmp_path_factory.mktemp("spaced"), risk=False) as ex:
        rng = random.Random(4)
        start = 1_700_000_000_000 // DAY_MS * DAY_MS + DAY_MS - 5 * 3_600_000
        price = MIDS["BTC-USD"]
        pipe = ex.client.pipeline(transaction=False)
        for i in range(1600):
            ts = start + i * 13_000 + rng.randint(0, 9000)
            price += rng.randint(-30, 30)
            sell = Place("mm", "sell", "limit", rng.randint(1, 40), price)
            buy = Place("taker", "buy", "limit", rng.randint(1, 40), price + rng.randint(0, 2),
                        tif="IOC")
            for n, cmd in enumerate((sell, buy)):
                pipe.xadd(in_stream("BTC-USD"), {IN_FIELD: _encode(cmd)}, id=f"{ts}-{n}")
        pipe.execute()
        ex.wait_settled()
        yield ex


def _encode(cmd: Command) -> bytes:
    return encode_command(cmd)


def test_candles_equal_candles_core_over_the_same_trades(spaced_exchange: Exchange, db_url: str,
                                                         tmp_path: Path) -> None:
    ex = spaced_exchange
    proc = ex.history(db_url, tmp_path / "history.log").start()
    try:
        wait_log(proc, "event=ready service=history")
        with open_store(db_url) as store:
            trades = [e for e in Published.read(ex).market["BTC-USD"] if isinstance(e, Trade)]
            assert trades[-1].ts - trades[0].ts > 5 * 3_600_000
            check_candles(store, "BTC-USD", trades)
            days = store.klines("BTC-USD", "1d")
            assert len(days) == 2 and days[0].closed and not days[1].closed
            assert len(store.klines("BTC-USD", "4h", start_ms=0)) >= 2
    finally:
        assert proc.stop() == 0


def test_a_trimmed_stream_gives_a_gap_row_and_a_warning(db_url: str, tmp_path: Path) -> None:
    with running_exchange(tmp_path, risk=False) as ex, open_store(db_url) as store:
        key = out_stream("BTC-USD")

        def trade_some(n: int) -> None:
            for _ in range(n):  # one engine commit (one :out entry) each, or a few
                ex.client.xadd(in_stream("BTC-USD"), {IN_FIELD: _encode(
                    Place("mm", "sell", "limit", 5, 100_000))})
                ex.client.xadd(in_stream("BTC-USD"), {IN_FIELD: _encode(
                    Place("taker", "buy", "limit", 5, 100_000, tif="IOC"))})
            ex.wait_settled()

        trade_some(30)
        log = tmp_path / "history.log"
        proc = ex.history(db_url, log).start()
        wait_until(lambda: ex.caught_up(store), TIMEOUT_S, "history caught up")
        assert proc.stop() == 0
        last_id, last_seq = store.position("BTC-USD") or ("", 0)
        trade_some(30)
        ex.client.xtrim(key, maxlen=1, approximate=False)  # retention ran past history
        (kept_id, kept_fields), = ex.entries(key)
        first_seq = decode_events(kept_fields[OUT_EVENTS_FIELD])[0].seq
        assert first_seq > last_seq + 1
        proc = ex.history(db_url, log).start()
        try:
            wait_until(lambda: ex.caught_up(store), TIMEOUT_S, "history caught up")
            (gap,) = store.gaps()
            assert (gap.stream, gap.after_id, gap.first_id, gap.lost_from_seq,
                    gap.lost_to_seq) == ("BTC-USD", last_id, kept_id.decode(), last_seq + 1,
                                         first_seq - 1)
            assert abs(gap.noted_ts - time.time() * 1000) < 600_000
            line = next(ln for ln in proc.log().splitlines() if "event=gap" in ln)
            assert "level=warning" in line and f"lost_from_seq={last_seq + 1} " in line
            trade_some(3)  # and it carries on
            wait_until(lambda: ex.caught_up(store), TIMEOUT_S, "history caught up")
        finally:
            assert proc.stop() == 0
        assert store.gaps() == [gap]


# -- a Redis Cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """The exchange on a 3-primary Redis Cluster (the market and the two risk shards on
    several nodes), after a 2,500-command flow. One market: the risk settler reads two
    markets of one node (different slots) in one XREAD, which a cluster refuses."""
    directory = tmp_path_factory.mktemp("cluster")
    with LocalCluster(primaries=3, replicas=0, data_dir=directory / "nodes",
                      die_with_parent=True) as cluster, \
            running_exchange(directory, cluster=cluster, eth=False) as ex:
        nodes = {cluster.node_of(key).port for key in ex.streams().values()}
        assert len(nodes) > 1  # the streams are spread: one reader per slot
        flow = Flow(ex.config, seed=13)
        for _ in range(5):
            flow.xadd(ex.client, 500)
        ex.wait_settled()
        yield ex


@pytest.mark.usefixtures("cluster_garbage")
def test_on_a_redis_cluster(cluster_exchange: Exchange, db_url: str, tmp_path: Path) -> None:
    ex = cluster_exchange
    proc = ex.history(db_url, tmp_path / "history.log").start()
    try:
        wait_log(proc, "event=ready service=history")
        with open_store(db_url) as store:
            assert ex.caught_up(store)
            check_against_events(store, ex, db_url)
    finally:
        assert proc.stop() == 0

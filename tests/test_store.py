"""The history database (``store``) and the projection (``history.project``), on both engines.

No Redis here: the events come from a real ``OrderBook`` fed in-process and
are packed into ``:out`` entries as the engine writes them; every test runs
on SQLite and on a real PostgreSQL (``pg_helpers``). What is checked:
migrations are idempotent; positions are compare-and-set; reads are index
range scans (the plans, on both engines); paging is Binance's; amounts
beyond 2**63 are exact; the rows do not depend on how the entries were cut
into batches or how often the writer restarted; gaps and republished
events; stops, take-profits, GTD orders and icebergs keep their fields and
their trigger time, an untriggered stop is open; a version-1 database
migrates forward with its rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pg_helpers import dump_tables

from candles.core import INTERVALS, Candle, CandleSeries
from contract.commands import Amend, Cancel, Clock, Command, Place
from contract.events import CancelRejected, Event, Report, Trade, encode_events
from contract.ids import order_number, ts_of
from contract.market import DEFAULT_MARKETS
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from history.project import Projection
from matching.book import OrderBook
from store.batch import Batch
from store.db import PositionConflict, Store, open_store
from store.rows import ExecutionRow, OrderRow
from store.schema import migrations

pytest_plugins = ("pg_helpers",)

MARKET = msgspec.structs.replace(DEFAULT_MARKETS[0], maker_fee="0.001", taker_fee="0.002")
SYMBOL = MARKET.symbol
T0 = 1_700_000_020_000
"""The scenario's first input entry time (ms)."""


# -- a scenario: real matching, packed as :out entries ----------------------------------


class Scenario:
    """Commands applied to a real book, one ``:out`` entry per commit (as the engine does)."""

    def __init__(self) -> None:
        self.book = OrderBook(MARKET)
        self.entries: list[list[Any]] = []
        self.events: list[Event] = []

    def commit(self, commands: list[tuple[str, Command]]) -> None:
        events: list[Event] = []
        for input_id, cmd in commands:
            self.book.apply_into(input_id, cmd, events)
        if events:
            last = commands[-1][0].encode()
            self.entries.append([last, [OUT_EVENTS_FIELD, encode_events(events),
                                        OUT_INPUT_FIELD, last]])
            self.events += events

    def reports(self) -> list[Report]:
        return [e for e in self.events if isinstance(e, Report)]


def scenario() -> Scenario:
    """alice rests sells, bob takes them: trades with fees over ~40 minutes, cancels,
    amends, a reused client order id, a post-only reject and a cancel reject."""
    s = Scenario()
    price = 5_000_000
    for i in range(60):
        ts = T0 + i * 41_000
        coid = "dup" if i in (5, 20) else f"a{i}"
        batch: list[tuple[str, Command]] = [
            (f"{ts}-0", Place("alice", "sell", "limit", 10 + i % 7, price + i % 5,
                              client_order_id=coid))]
        if i % 2:
            batch.append((f"{ts}-1", Place("bob", "buy", "market", 4 + i % 3)))
        if i % 3 == 0:
            batch.append((f"{ts}-2", Place("bob", "buy", "limit", 3, price - 10 - i % 4)))
        if i in (6, 21, 40):  # cancel an earlier resting order (the first "dup" at 6)
            batch.append((f"{ts}-3", Cancel("alice", order_id=f"{T0 + (i - 1) * 41_000}-0")))
        if i == 7:
            batch.append((f"{ts}-3", Cancel("alice", order_id="1-0")))  # unknown: rejected
        if i == 8:
            batch.append((f"{ts}-3", Place("alice", "buy", "limit", 5, price + 50,
                                           post_only=True)))  # would take: rejected
        if i % 10 == 9:
            batch.append((f"{ts}-4", Amend("alice", order_id=f"{ts}-0", qty=30)))
        if i == 30:  # sweeps the asks; the rest expires
            batch.append((f"{ts}-5", Place("bob", "buy", "market", 5000)))
        s.commit(batch)
    return s


def project(entries: list[list[Any]], store: Store, cuts: int = 1) -> None:
    """Write ``entries`` in ``cuts`` batches, reloading the state before each (a restart)."""
    step = max(1, -(-len(entries) // cuts))
    for i in range(0, len(entries), step):
        projection = Projection(store.load_state([SYMBOL]), [SYMBOL])
        projection.add_market(SYMBOL, entries[i:i + step], noted_ms=0)
        store.write(projection.take())


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        yield s


@pytest.fixture
def loaded(store: Store) -> tuple[Store, Scenario]:
    s = scenario()
    project(s.entries, store, cuts=7)
    return store, s


# -- schema -----------------------------------------------------------------------------


def test_migrations_are_applied_once(db_url: str) -> None:
    with open_store(db_url) as first:
        assert first.schema_versions() == [1, 2]
        assert first.migrate() == []
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(open_store(db_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in stores:
        assert s.schema_versions() == [1, 2]
        s.close()


def test_sqlite_file_and_directory_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "history.sqlite3"
    with open_store(f"sqlite:///{path}"):
        pass
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store("mysql://user:secret@host/db")
    with pytest.raises(ValueError, match="no file name"):
        open_store("sqlite:///")


# -- writes: one transaction, positions compare-and-set ----------------------------------


def _trade(trade_id: int) -> tuple[str, int, int, int, int, int, str, str, str]:
    return (SYMBOL, trade_id, trade_id, T0 + trade_id, 100, 1, "buy", "m", "t")


def test_a_moved_position_refuses_the_whole_batch(db_url: str) -> None:
    with open_store(db_url) as a, open_store(db_url) as b:
        a.write(Batch(positions=[(SYMBOL, None, "5-0", 1)], trades=[_trade(1)]))
        # b resumed from nothing too: its first write conflicts and writes nothing
        with pytest.raises(PositionConflict):
            b.write(Batch(positions=[(SYMBOL, None, "5-0", 1), ("acct-0", None, "7-0", 3)],
                          trades=[_trade(1)]))
        with pytest.raises(PositionConflict):
            b.write(Batch(positions=[(SYMBOL, "4-0", "6-0", 2)], trades=[_trade(2)]))
        assert b.position("acct-0") is None and b.last_trade_id(SYMBOL) == 1
        b.write(Batch(positions=[(SYMBOL, "5-0", "6-0", 2)], trades=[_trade(2)]))
        with pytest.raises(PositionConflict):  # a's view is now stale
            a.write(Batch(positions=[(SYMBOL, "5-0", "6-0", 2)], trades=[_trade(2)]))
        assert [t.trade_id for t in a.trades(SYMBOL)] == [1, 2]
        assert a.position(SYMBOL) == ("6-0", 2)


def test_amounts_beyond_int64_are_exact(store: Store) -> None:
    big = 10**20 + 7
    store.write(Batch(positions=[("acct-0", None, "1-0", 2)],
                      balances=[(0, "whale", "ETH", str(big), str(2**64), 2, T0)],
                      balance_changes=[(0, 2, "whale", "ETH", str(big), str(2**64), T0)],
                      candles=[(SYMBOL, "1d", 0, 86_399_999, 5, 9, 1, 7, 10**15,
                                str(2**90), 3, 0)]))
    (row,) = store.balances("whale")
    assert (row.available, row.held) == (big, 2**64)
    store.write(Batch(positions=[("acct-1", None, "1-0", 1)],  # the fee account: per shard
                      balances=[(1, "whale", "ETH", "3", "4", 1, T0 + 5)]))
    (row,) = store.balances("whale")
    assert (row.available, row.held, row.ts) == (big + 3, 2**64 + 4, T0 + 5)
    (candle,) = store.klines(SYMBOL, "1d")
    assert candle.quote_volume == 2**90 and candle.volume == 10**15


# -- the projection: rows equal the events, whatever the batches ------------------------


def expected_orders(reports: list[Report]) -> dict[str, OrderRow]:
    """Each order's row computed from its reports alone (the reference for the table)."""
    out: dict[str, OrderRow] = {}
    fees: dict[str, int] = {}
    working: dict[str, int | None] = {}
    triggered: dict[str, int] = {}
    reasons: dict[str, str | None] = {}
    for r in reports:
        fees[r.order_id] = fees.get(r.order_id, 0) + r.fee
        if r.order_id not in working:
            working[r.order_id] = None
        if working[r.order_id] is None and r.exec_type == "new":
            working[r.order_id] = r.ts
        if r.exec_type == "triggered":
            triggered.setdefault(r.order_id, r.ts)
        if r.reason is not None or r.order_id not in reasons:
            reasons[r.order_id] = r.reason if r.reason is not None else reasons.get(r.order_id)
        out[r.order_id] = OrderRow(
            SYMBOL, r.order_id, order_number(r.order_id), r.account, r.client_order_id,
            r.side, r.type, r.tif, r.price, r.qty, None, r.status, r.cum_qty, r.cum_notional,
            fees[r.order_id], reasons[r.order_id], ts_of(r.order_id), working[r.order_id],
            r.ts, r.seq, r.stop_price, r.expire_time, r.display_qty,
            triggered.get(r.order_id))
    return out


def execution_of(r: Report | CancelRejected) -> ExecutionRow:
    if isinstance(r, CancelRejected):
        return ExecutionRow(SYMBOL, r.seq, SYMBOL, r.ts, r.account, r.order_id,
                            r.client_order_id, "cancel_rejected", None, None, 0, 0, 0, 0, 0, 0,
                            0, None, None, 0, r.reason)
    return ExecutionRow(SYMBOL, r.seq, SYMBOL, r.ts, r.account, r.order_id, r.client_order_id,
                        r.exec_type, r.status, r.side, r.price, r.qty, r.last_qty, r.last_price,
                        r.cum_qty, r.leaves_qty, r.cum_notional, r.liquidity, r.trade_id, r.fee,
                        r.reason)


def all_candles(trades: list[Trade], width: int) -> list[Candle]:
    """candles.core over ``trades``, every candle kept (the reference for the table)."""
    series = CandleSeries(width, keep=10**6)
    for t in trades:
        series.add(t.ts, t.price, t.qty)
    return series.last(10**6)


def test_rows_equal_the_events(loaded: tuple[Store, Scenario]) -> None:
    store, s = loaded
    reports = s.reports()
    assert {e.exec_type for e in reports} >= {"new", "trade", "canceled", "rejected",
                                              "replaced", "expired"}
    assert any(isinstance(e, CancelRejected) for e in s.events)
    assert sum(r.fee for r in reports) > 0
    want = expected_orders(reports)
    for account in ("alice", "bob"):
        got = store.orders(SYMBOL, account, from_number=0, limit=1000)
        assert got == sorted((o for o in want.values() if o.account == account),
                             key=lambda o: o.order_number or 0)
    trades = [e for e in s.events if isinstance(e, Trade)]
    got_trades = store.trades(SYMBOL, from_trade_id=0, limit=1000)
    assert [(t.trade_id, t.seq, t.ts, t.price, t.qty, t.taker_side, t.maker_order_id,
             t.taker_order_id) for t in got_trades] == [
        (t.trade_id, t.seq, t.ts, t.price, t.qty, t.taker_side, t.maker_order_id,
         t.taker_order_id) for t in trades]
    fills = [execution_of(r) for r in reports if r.account == "alice" and r.trade_id]
    assert store.my_trades(SYMBOL, "alice", from_trade_id=0, limit=1000) == fills
    for interval, width in INTERVALS.items():
        want_candles = all_candles(trades, width)
        got_candles = store.klines(SYMBOL, interval, start_ms=0, limit=1000)
        assert [msgspec.structs.replace(c, closed=False) for c in got_candles] == [
            msgspec.structs.replace(c, closed=False) for c in want_candles], interval
        # every candle but the last is closed; the last is closed once the clock passed it
        assert all(c.closed for c in got_candles[:-1])
    assert store.position(SYMBOL) == (s.entries[-1][0].decode(), s.events[-1].seq)
    assert store.last_trade_id(SYMBOL) == trades[-1].trade_id
    assert [(c.open_time, c.trades) for c in store.minute_candles(SYMBOL, T0 + 600_000)] == [
        (c.open_time, c.trades) for c in all_candles(trades, 60_000) if c.open_time >= T0 + 600_000]


def test_rows_do_not_depend_on_batches_or_restarts(db_url: str, tmp_path: Path) -> None:
    s = scenario()
    with open_store(db_url) as one:
        project(s.entries, one, cuts=1)
        whole = dump_tables(db_url)
    other = f"sqlite:///{tmp_path / 'cut.sqlite3'}" if db_url.startswith("sqlite") else \
        db_url.rsplit("/", 1)[0] + "/" + _new_pg_database(db_url)
    with open_store(other) as cut:
        project(s.entries, cut, cuts=len(s.entries))  # a restart after every entry
    assert dump_tables(other) == whole


def _new_pg_database(url: str) -> str:
    import psycopg

    name = url.rsplit("/", 1)[1] + "_b"
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


# -- reads: Binance's paging ----------------------------------------------------------------


def test_order_lookups(loaded: tuple[Store, Scenario]) -> None:
    store, s = loaded
    want = expected_orders(s.reports())
    some = want[f"{T0 + 3 * 41_000}-0"]
    assert some.order_number is not None
    assert store.order(SYMBOL, "alice", order_id=some.order_id) == some
    assert store.order(SYMBOL, "alice", order_number=some.order_number) == some
    assert store.order(SYMBOL, "alice", client_order_id="a3") == some
    assert store.order(SYMBOL, "bob", order_id=some.order_id) is None  # not bob's
    assert store.order("ETH-USD", "alice", order_id=some.order_id) is None
    # "dup" was used twice (the first canceled first): the latest order has it
    assert store.order(SYMBOL, "alice", client_order_id="dup") == want[f"{T0 + 20 * 41_000}-0"]
    with pytest.raises(ValueError):
        store.order(SYMBOL, "alice")
    opened = [o for o in want.values() if o.account == "alice"
              and o.status in ("new", "partially_filled")]
    assert opened and store.open_orders(SYMBOL, "alice") == sorted(
        opened, key=lambda o: o.order_number or 0)
    assert store.open_orders(None, "alice") == store.open_orders(SYMBOL, "alice")


def _pages(fetch: Any, key: Any, size: int) -> list[Any]:
    """Every row by ``fetch(from_key, limit)`` pages, the next from the last key + 1."""
    out: list[Any] = []
    start = 0
    while True:
        page = fetch(start, size)
        assert len(page) <= size
        out += page
        if len(page) < size:
            return out
        start = key(page[-1]) + 1


def test_paging_is_binances(loaded: tuple[Store, Scenario]) -> None:
    store, s = loaded
    orders = store.orders(SYMBOL, "alice", from_number=0, limit=1000)
    assert len(orders) > 30
    assert _pages(lambda k, n: store.orders(SYMBOL, "alice", from_number=k, limit=n),
                  lambda o: o.order_number, 7) == orders
    assert store.orders(SYMBOL, "alice", limit=5) == orders[-5:]  # no start: the latest
    lo, hi = orders[10].created_ts, orders[20].created_ts
    assert store.orders(SYMBOL, "alice", start_ms=lo, end_ms=hi, limit=1000) == orders[10:21]
    assert store.orders(SYMBOL, "alice", start_ms=lo, limit=4) == orders[10:14]
    assert store.orders(SYMBOL, "alice", end_ms=hi, limit=4) == orders[17:21]
    assert store.orders(SYMBOL, "alice", start_ms=lo + 1, end_ms=hi - 1, limit=1000) == \
        orders[11:20]
    assert store.orders(SYMBOL, "alice", limit=0) == []

    fills = store.my_trades(SYMBOL, "alice", from_trade_id=0, limit=1000)
    assert len(fills) > 20
    assert _pages(lambda k, n: store.my_trades(SYMBOL, "alice", from_trade_id=k, limit=n),
                  lambda f: f.trade_id, 6) == fills
    assert store.my_trades(SYMBOL, "alice", limit=3) == fills[-3:]
    lo, hi = fills[5].ts, fills[12].ts
    assert store.my_trades(SYMBOL, "alice", start_ms=lo, end_ms=hi, limit=1000) == [
        f for f in fills if lo <= f.ts <= hi]
    assert store.my_trades(SYMBOL, "alice", end_ms=hi, limit=2) == [
        f for f in fills if f.ts <= hi][-2:]
    assert store.my_trades(SYMBOL, "alice", start_ms=fills[-1].ts + 1) == []

    trades = store.trades(SYMBOL, from_trade_id=0, limit=1000)
    assert _pages(lambda k, n: store.trades(SYMBOL, from_trade_id=k, limit=n),
                  lambda t: t.trade_id, 9) == trades
    assert store.trades(SYMBOL, limit=4) == trades[-4:] == store.last_trades(SYMBOL, 4)
    lo, hi = trades[3].ts, trades[9].ts
    assert store.trades(SYMBOL, start_ms=lo, end_ms=hi, limit=1000) == [
        t for t in trades if lo <= t.ts <= hi]
    assert store.trades(SYMBOL, from_trade_id=trades[5].trade_id, end_ms=hi, limit=1000) == [
        t for t in trades[5:] if t.ts <= hi]

    minutes = store.klines(SYMBOL, "1m", start_ms=0, limit=1000)
    assert len(minutes) > 20
    assert store.klines(SYMBOL, "1m", limit=5) == minutes[-5:]
    lo, hi = minutes[4].open_time, minutes[11].open_time
    assert store.klines(SYMBOL, "1m", start_ms=lo, end_ms=hi) == minutes[4:12]
    assert store.klines(SYMBOL, "1m", start_ms=lo + 1, limit=2) == minutes[5:7]
    assert store.klines(SYMBOL, "1m", end_ms=hi, limit=3) == minutes[9:12]
    with pytest.raises(ValueError, match="interval"):
        store.klines(SYMBOL, "2m")


# -- every read is an index range scan ------------------------------------------------------


def _reads(store: Store, s: Scenario) -> dict[str, tuple[Any, str]]:
    """name -> (a call of one read, the index that must serve its main statement)."""
    some = expected_orders(s.reports())[f"{T0 + 3 * 41_000}-0"]
    mid = T0 + 20 * 41_000
    return {
        "order by id": (lambda: store.order(SYMBOL, "alice", order_id=some.order_id),
                        "orders"),
        "order by number": (lambda: store.order(SYMBOL, "alice",
                                                order_number=some.order_number),
                            "orders_by_number"),
        "order by client id": (lambda: store.order(SYMBOL, "alice", client_order_id="a3"),
                               "orders_by_client_id"),
        "all orders from id": (lambda: store.orders(SYMBOL, "alice", from_number=5),
                               "orders_by_number"),
        "all orders latest": (lambda: store.orders(SYMBOL, "alice"), "orders_by_number"),
        "all orders by time": (lambda: store.orders(SYMBOL, "alice", start_ms=T0, end_ms=mid),
                               "orders_by_number"),
        "open orders": (lambda: store.open_orders(SYMBOL, "alice"), "orders_open"),
        "open orders, every market": (lambda: store.open_orders(None, "alice"), "orders_open"),
        "my trades from id": (lambda: store.my_trades(SYMBOL, "alice", from_trade_id=3),
                              "executions_my_trades"),
        "my trades by time": (lambda: store.my_trades(SYMBOL, "alice", start_ms=T0,
                                                      end_ms=mid), "executions_my_trades"),
        "my trades latest": (lambda: store.my_trades(SYMBOL, "alice"), "executions_my_trades"),
        "trades from id": (lambda: store.trades(SYMBOL, from_trade_id=3), "trades"),
        "trades by time": (lambda: store.trades(SYMBOL, start_ms=T0, end_ms=mid), "trades"),
        "last trades": (lambda: store.last_trades(SYMBOL, 50), "trades"),
        "last trade id": (lambda: store.last_trade_id(SYMBOL), "trades"),
        "klines by time": (lambda: store.klines(SYMBOL, "1m", start_ms=T0, end_ms=mid),
                           "candles"),
        "klines latest": (lambda: store.klines(SYMBOL, "5m"), "candles"),
        "minute candles": (lambda: store.minute_candles(SYMBOL, T0), "candles"),
        "balances": (lambda: store.balances("alice"), "balances"),
        "position": (lambda: store.position(SYMBOL), "stream_positions"),
    }


def _index_of(store: Store, table: str, plan: str) -> str:
    """The index a one-table plan uses; fails on a full scan or a sort."""
    if store.dialect == "sqlite":
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
        assert plan.startswith("SEARCH"), plan
        if "PRIMARY KEY" in plan or "INTEGER PRIMARY KEY" in plan or " USING " not in plan:
            return table
        name = plan.split(" INDEX ", 1)[1].split(" ", 1)[0]
        return table if name.startswith("sqlite_autoindex") else name
    assert "Seq Scan" not in plan and "Sort" not in plan and "Bitmap" not in plan, plan
    name = plan.split(" using ", 1)[1].split(" ", 1)[0]
    return table if name.endswith("_pkey") else name


def test_every_read_is_an_index_range_scan(loaded: tuple[Store, Scenario], db_url: str
                                           ) -> None:
    store, s = loaded
    if store.dialect == "postgresql":  # statistics, as autovacuum keeps them
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    for name, (call, index) in _reads(store, s).items():
        plans = store.explain(call)
        assert plans, name
        for sql, plan in plans:
            table = sql.split(" FROM ", 1)[1].split(" ", 1)[0]
            # a time bound of a trade id range is looked up by time
            time_bound = sql.startswith("SELECT trade_id FROM trades WHERE symbol = ? AND ts")
            assert _index_of(store, table, plan) == (
                "trades_by_time" if time_bound else index), (name, sql, plan)


# -- seqs: gaps and republished events --------------------------------------------------------


def test_gaps_and_republished_events(store: Store) -> None:
    s = scenario()
    first, rest = s.entries[:10], s.entries[10:]
    projection = Projection(store.load_state([SYMBOL]), [SYMBOL])
    assert projection.add_market(SYMBOL, first, noted_ms=123) == []
    store.write(projection.take())
    # trimmed: entries 10..14 are gone; then one already written comes again
    projection = Projection(store.load_state([SYMBOL]), [SYMBOL])
    notices = projection.add_market(SYMBOL, rest[5:], noted_ms=456)
    again = f"{T0 + 10**8}-0"  # as after a failover: the same events under a new id
    notices += projection.add_market(SYMBOL, [[again.encode(), first[3][1]]], noted_ms=456)
    store.write(projection.take())
    last_written = msgspec.msgpack.decode(first[-1][1][1])[-1][1]  # seq is field 1
    first_after = msgspec.msgpack.decode(rest[5][1][1])[0][1]
    assert [(n.kind, n.first_seq, n.last_seq) for n in notices] == [
        ("gap", last_written + 1, first_after - 1),
        ("republished", msgspec.msgpack.decode(first[3][1][1])[0][1],
         msgspec.msgpack.decode(first[3][1][1])[-1][1])]
    (gap,) = store.gaps()
    assert (gap.stream, gap.after_id, gap.first_id, gap.lost_from_seq, gap.lost_to_seq,
            gap.noted_ts) == (SYMBOL, first[-1][0].decode(), rest[5][0].decode(),
                              last_written + 1, first_after - 1, 456)
    assert store.position(SYMBOL) == (again, s.events[-1].seq)
    # nothing of the republished entry was written twice (the inserts would have failed)
    assert len(store.trades(SYMBOL, from_trade_id=0, limit=10**4)) == len(
        [e for e in s.events if isinstance(e, Trade) and
         not last_written < e.seq < first_after])


# -- section B: stops, take-profits, GTD orders, icebergs ------------------------------------

T1 = T0 + 10**7
"""The order-types scenario's first input entry time (ms)."""
P = 5_000_000


def order_types_scenario() -> Scenario:
    """A stop buy amended and triggered by a trade through an iceberg, filled later; a stop
    sell canceled untriggered; a take-profit left untriggered; a GTD bid expired by the
    engine's clock entry."""
    s = Scenario()
    s.commit([(f"{T1}-0", Place("alice", "sell", "limit", 19, P))])
    s.commit([(f"{T1 + 1}-0", Place("bob", "buy", "market", 1, 0, "IOC"))])  # prints P
    s.commit([(f"{T1 + 2}-0", Place("bob", "buy", "stop_limit", 9, P + 20,
                                    client_order_id="stop-buy", stop_price=P + 10))])
    s.commit([(f"{T1 + 3}-0", Place("alice", "sell", "stop_market", 2, 0, "IOC",
                                    client_order_id="stop-sell", stop_price=P - 100))])
    s.commit([(f"{T1 + 4}-0", Place("carl", "sell", "take_profit_limit", 2, P + 5,
                                    client_order_id="tp", stop_price=P + 500))])
    s.commit([(f"{T1 + 5}-0", Place("dora", "buy", "limit", 4, P - 50, "GTD",
                                    client_order_id="gtd", expire_time=T1 + 60_000))])
    s.commit([(f"{T1 + 6}-0", Place("erin", "sell", "limit", 10, P + 10,
                                    client_order_id="berg", display_qty=2))])
    s.commit([(f"{T1 + 7}-0", Amend("bob", client_order_id="stop-buy", stop_price=P + 8))])
    # frank takes 18 at P, then 3 of the iceberg at P + 10: bob's stop triggers and takes
    # the iceberg's 7 left; its last 2 rest at P + 20 until greg sells them.
    s.commit([(f"{T1 + 8}-0", Place("frank", "buy", "limit", 21, P + 10, "IOC"))])
    s.commit([(f"{T1 + 9}-0", Place("greg", "sell", "limit", 2, P + 20))])
    s.commit([(f"{T1 + 60_000}-0", Clock())])  # the GTD bid's expiry is due
    s.commit([(f"{T1 + 60_001}-0", Cancel("alice", client_order_id="stop-sell"))])
    return s


def test_stops_gtd_and_icebergs_are_kept_with_their_trigger_time(db_url: str) -> None:
    s = order_types_scenario()
    with open_store(db_url) as store:
        project(s.entries, store, cuts=len(s.entries))  # a restart after every entry
        want = expected_orders(s.reports())
        rows = {}
        for account in ("alice", "bob", "carl", "dora", "erin", "frank", "greg"):
            got = store.orders(SYMBOL, account, start_ms=T1, limit=1000)
            assert got == sorted((o for o in want.values() if o.account == account),
                                 key=lambda o: o.order_number or 0), account
            rows.update({o.client_order_id: o for o in got})
        trigger = next(r for r in s.reports() if r.exec_type == "triggered")
        stop_buy = rows["stop-buy"]
        assert (stop_buy.type, stop_buy.status, stop_buy.stop_price, stop_buy.cum_qty,
                stop_buy.trigger_ts) == ("stop_limit", "filled", P + 8, 9, trigger.ts)
        assert trigger.ts == T1 + 8 and stop_buy.updated_ts == T1 + 9  # filled later
        stop_sell = rows["stop-sell"]
        assert (stop_sell.type, stop_sell.status, stop_sell.trigger_ts) == \
            ("stop_market", "canceled", None)
        take_profit = rows["tp"]
        assert (take_profit.status, take_profit.stop_price, take_profit.trigger_ts) == \
            ("untriggered", P + 500, None)
        assert store.open_orders(SYMBOL, "carl") == [take_profit]  # untriggered is open
        assert store.open_orders(None, "carl") == [take_profit]
        gtd = rows["gtd"]
        assert (gtd.tif, gtd.expire_time, gtd.status, gtd.reason, gtd.updated_ts) == \
            ("GTD", T1 + 60_000, "expired", "EXPIRED", T1 + 60_000)
        berg = rows["berg"]
        assert (berg.display_qty, berg.status, berg.cum_qty) == (2, "filled", 10)
        assert store.open_orders(SYMBOL, "bob") == []
        # the stop's reports are kept with the executions, its trigger among them
        executions = [row for row in dump_tables(db_url)["executions"]
                      if row[5] == stop_buy.order_id]  # order_id is column 5
        assert [(row[7], row[8]) for row in executions][:4] == [
            ("new", "untriggered"), ("replaced", "untriggered"), ("triggered", "new"),
            ("trade", "partially_filled")]


def _execute(url: str, sql: str, params: tuple[Any, ...]) -> None:
    """One statement on the database at ``url``, with the engine's own driver."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite://"):])
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(sql.replace("?", "%s"), params)


def test_a_version_1_database_migrates_forward(db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = migrations()[:1]
    monkeypatch.setattr("store.db.migrations", lambda: first)
    with open_store(db_url) as old:
        assert old.schema_versions() == [1]
    # an open order and a filled one, as a version-1 history wrote them
    for order_id, status, cum in ((f"{T0}-0", "new", 0), (f"{T0 + 1}-0", "filled", 5)):
        _execute(db_url, "INSERT INTO orders (symbol, order_id, order_number, account, "
                 "client_order_id, side, type, tif, price, qty, quote_qty, status, cum_qty, "
                 "cum_notional, fee, reason, created_ts, working_ts, updated_ts, last_seq) "
                 "VALUES (?, ?, ?, 'alice', NULL, 'buy', 'limit', 'GTC', 100, 5, NULL, ?, ?, "
                 "'0', '0', NULL, ?, ?, ?, 1)",
                 (SYMBOL, order_id, order_number(order_id), status, cum, ts_of(order_id),
                  ts_of(order_id), ts_of(order_id)))
    _execute(db_url, "INSERT INTO stream_positions (stream, last_id, last_seq) "
             "VALUES (?, ?, 1)", (SYMBOL, f"{T0 + 1}-0"))
    monkeypatch.undo()
    with open_store(db_url) as store:
        assert store.schema_versions() == [1, 2]
        (kept,) = store.open_orders(SYMBOL, "alice")
        assert (kept.order_id, kept.status, kept.stop_price, kept.expire_time,
                kept.display_qty, kept.trigger_ts) == (f"{T0}-0", "new", 0, 0, 0, None)
        assert [o.status for o in store.orders(SYMBOL, "alice")] == ["new", "filled"]
        # the writer goes on with the new order types from where version 1 stopped
        project(order_types_scenario().entries, store, cuts=3)
        assert [o.status for o in store.open_orders(SYMBOL, "carl")] == ["untriggered"]
        assert [o.order_id for o in store.open_orders(SYMBOL, "alice")] == [f"{T0}-0"]
        if store.dialect == "postgresql":  # statistics, as autovacuum keeps them
            import psycopg

            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("ANALYZE")
        for call in (lambda: store.open_orders(SYMBOL, "carl"),
                     lambda: store.open_orders(None, "carl")):
            for sql, plan in store.explain(call):
                assert _index_of(store, "orders", plan) == "orders_open", (sql, plan)

"""``streamex bench history``: how fast ``streamex history`` writes the streams to a database.

The ``:out`` entries are the real ones: a seeded realistic flow
(``benchmarks.flow``, about 5% of commands trade, 41% cancels) goes through
the risk stage's ledger (holds, forwards), the matching engine and back
(settlement, fees) in-process, ``--per-entry`` commands per engine commit
(an engine at 20,000 orders/s commits about that many per read), giving one
market ``:out`` entry and one or two risk shard ``:out`` entries per commit,
exactly as the services would write them. Then, for each database
(``--db sqlite``, ``postgresql`` or ``both``) on an embedded Redis (no AOF):

1. catch-up: every entry is in Redis first, and the history service (the
   service's code, in-process, ``--batch-entries`` per transaction) writes
   them all to an empty database: orders/s (order messages, as ``bench e2e``
   counts them; about half are new orders), entries/s, events/s, rows/s, and
   the share of the time spent inside ``Store.write``;
2. live (``--rate``, default 20,000 orders/s, 0 to skip): a thread XADDs the
   entries at that rate while a real ``streamex history`` process follows;
   the database's positions are polled every 5 ms, and each entry's lag
   (XADD to committed) is reported as percentiles; the run keeps up if the
   lag stays bounded (p99 and the last entry's).

Both check the result: the database holds every order, trade and balance
change of the flow. PostgreSQL is ``--pg-url`` or, by default, a throwaway
cluster started here with Debian's binaries (``/usr/lib/postgresql/*/bin``,
default durability settings: ``fsync`` on). The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import platform
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import redis

from benchmarks.flow import realistic_flow
from contract.commands import Place
from contract.events import Event, Report, Trade, encode_events
from contract.keys import out_stream
from contract.market import DEFAULT_MARKETS
from contract.risk import (
    Balance,
    Deposit,
    MarketAnswer,
    RiskCommand,
    RiskEvent,
    ToMarket,
    encode_risk_command,
    encode_risk_events,
    risk_keys,
)
from contract.settings import Config, HistoryConfig, RiskConfig
from contract.streams import FORWARD_ID_FIELD, IN_FIELD, OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from history.service import HistoryService
from ledger.core import Ledger
from matching.apply import apply_entries
from matching.book import OrderBook
from redisio.topology import Topology
from risk.settler import settle_commands
from store.db import Store, open_store
from streamex.config import dump_config
from streamex.redis_server import RedisServer, free_port

MARKET = msgspec.structs.replace(DEFAULT_MARKETS[0], maker_fee="0.001", taker_fee="0.002")
POLL_S = 0.005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=200_000,
                        help="order messages (places, cancels, amends) in the flow "
                             "(default: %(default)s)")
    parser.add_argument("--per-entry", type=int, default=20,
                        help="commands per engine commit (:out entry) (default: %(default)s)")
    parser.add_argument("--batch-entries", type=int, default=HistoryConfig().batch_entries,
                        help="[history] batch_entries (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=20_000.0,
                        help="orders/s of the live run, 0 to skip it (default: %(default)s)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both",
                        help="(default: %(default)s)")
    parser.add_argument("--pg-url", default=None,
                        help="a PostgreSQL database to use (it is emptied); default: a "
                             "throwaway local cluster")
    parser.add_argument("--seed", type=int, default=1, help="flow seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.history_bench [options]``."""
    parser = argparse.ArgumentParser(prog="streamex bench history", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


# -- the entries: the real pipeline, in-process ------------------------------------------


@dataclass
class Entries:
    """The ``:out`` entries of the flow, in commit order, and what they contain."""

    items: list[tuple[str, str | None, list[bytes]]]
    """(stream key, explicit id or None for ``*``, flat fields)."""
    commands: int
    """Order messages (places, cancels, amends): "orders/s" counts these, as ``bench e2e``."""
    orders: int
    """Distinct orders placed."""
    trades: int
    balance_changes: int
    events: int


def make_entries(n: int, per_entry: int, seed: int) -> Entries:
    """Run ``n`` order commands through the ledger, the book and settlement. Cost: the
    matching and holds in Python, ~10 us a command."""
    symbol = MARKET.symbol
    flow = realistic_flow(MARKET, n, seed)
    accounts = sorted({cmd.account for _, cmd in flow})
    ledger = Ledger(0, {symbol: MARKET}, "fees")
    book = OrderBook(MARKET)
    risk_out = risk_keys(0).output
    market_out = out_stream(symbol)
    items: list[tuple[str, str | None, list[bytes]]] = []
    orders: set[str] = set()
    trades = changes = events_total = 0
    setup: list[RiskEvent] = []
    deposits: list[RiskCommand] = []
    for a in accounts:
        deposits += [Deposit(a, MARKET.quote, 10**18, f"bench:{a}:q"),
                     Deposit(a, MARKET.base, 10**15, f"bench:{a}:b")]
    first_ms = int(flow[0][0].split("-")[0]) - 1
    ledger.apply_entries([[f"{first_ms}-{i}".encode(), [IN_FIELD, encode_risk_command(d)]]
                          for i, d in enumerate(deposits)], setup)
    items.append((risk_out, None, [OUT_EVENTS_FIELD, encode_risk_events(setup),
                                   OUT_INPUT_FIELD, f"{first_ms}-0".encode()]))
    last_price = MARKET.min_ticks
    settle_n = 0
    for start in range(0, len(flow), per_entry):
        chunk = flow[start:start + per_entry]
        risk_in = []
        for entry_id, cmd in chunk:
            if isinstance(cmd, Place) and cmd.type == "limit":
                last_price = cmd.price
            elif isinstance(cmd, Place) and cmd.side == "buy":  # by budget, as the gateway
                cmd = msgspec.structs.replace(
                    cmd, qty=0, quote_qty=MARKET.buy_hold(last_price * 102 // 100, cmd.qty))
            risk_in.append([entry_id.encode(),
                            [IN_FIELD, encode_risk_command(ToMarket(symbol, cmd))]])
        held: list[RiskEvent] = []
        ledger.apply_entries(risk_in, held)
        last_in = chunk[-1][0]
        if held:
            items.append((risk_out, None, [OUT_EVENTS_FIELD, encode_risk_events(held),
                                           OUT_INPUT_FIELD, last_in.encode()]))
        forwards = ledger.take_outbox()
        matched: list[Event] = []
        market_in: list[Any] = []
        for _, fields in forwards:  # the market's :in entry id: the order's own id
            forward_id: bytes = fields[fields.index(FORWARD_ID_FIELD) + 1]
            market_in.append([forward_id, list(fields)])
        apply_entries(book, market_in, matched)
        if matched:
            out_id = market_in[-1][0].decode()
            fields = [OUT_EVENTS_FIELD, encode_events(matched), OUT_INPUT_FIELD,
                      out_id.encode()]
            items.append((market_out, out_id, fields))
            settles = settle_commands(symbol, [[out_id.encode(), fields]], 0, 1)
            settled: list[RiskEvent] = []
            ms = last_in.split("-")[0]
            ledger.apply_entries([[f"{ms}-{10_000 + settle_n + i}".encode(), [IN_FIELD, c]]
                                  for i, c in enumerate(settles)], settled)
            settle_n += len(settles)
            if settled:
                items.append((risk_out, None, [OUT_EVENTS_FIELD, encode_risk_events(settled),
                                               OUT_INPUT_FIELD, last_in.encode()]))
            held += settled
            events_total += len(matched)
            for e in matched:
                if type(e) is Report:
                    orders.add(e.order_id)
                elif type(e) is Trade:
                    trades += 1
        events_total += len(held)
        for r in held:
            if type(r) is Balance:
                changes += 1
            elif type(r) is MarketAnswer:
                orders.add(r.event.order_id or "")
    changes += sum(type(e) is Balance for e in setup)
    events_total += len(setup)
    return Entries(items, len(flow), len(orders), trades, changes, events_total)


def _xadd(client: Any, items: list[tuple[str, str | None, list[bytes]]]) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for key, entry_id, fields in items:
        pipe.execute_command("XADD", key, entry_id or "*", *fields)
    ids: list[bytes] = pipe.execute()
    return ids


# -- PostgreSQL ----------------------------------------------------------------------------


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (default settings) on 127.0.0.1; yields a database URL.

    As root it runs as ``nobody`` (PostgreSQL refuses root). Raises ``RuntimeError``
    if no ``/usr/lib/postgresql/*/bin`` has ``initdb``.
    """
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise RuntimeError("no PostgreSQL: install Debian's postgresql or pass --pg-url")
    bin_dir = Path(bins[-1]).parent
    root = os.geteuid() == 0
    uid, gid = ((pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid) if root
                else (os.getuid(), os.getgid()))

    def owner() -> None:
        if os.geteuid() != uid:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    work = Path(tempfile.mkdtemp(prefix="streamex-bench-pg-"))
    os.chown(work, uid, gid)
    password = secrets.token_hex(16)
    pwfile = work / "pw"
    pwfile.write_text(password + "\n")
    os.chown(pwfile, uid, gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "LC_ALL": "C.UTF-8"}
    port = free_port()
    data = str(work / "data")
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", data, "-U", "bench", "--pwfile",
                        str(pwfile), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"],
                       preexec_fn=owner, env=env, cwd=work, check=True, capture_output=True)
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", data, "-l", str(work / "log"), "-w",
                        "-o", f"-c listen_addresses=127.0.0.1 -p {port} "
                              f"-c unix_socket_directories={work}", "start"],
                       preexec_fn=owner, env=env, cwd=work, check=True, capture_output=True)
        try:
            yield f"postgresql://bench:{password}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([str(bin_dir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                           preexec_fn=owner, env=env, cwd=work, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _empty(url: str, directory: Path, name: str) -> str:
    """A database URL to start from empty: a new SQLite file, or the PostgreSQL one with
    the history tables dropped."""
    if url == "sqlite":
        return f"sqlite:///{directory / (name + '.sqlite3')}"
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("stream_positions", "orders", "executions", "trades", "candles",
                      "balances", "balance_changes", "transfers", "gaps", "schema_migrations"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return url


# -- the two runs --------------------------------------------------------------------------


def _check(store: Store, entries: Entries) -> str | None:
    """What is wrong with the database after a run (None: it holds the whole flow)."""
    orders = sum(len(store.orders(MARKET.symbol, a, from_number=0, limit=10**9))
                 for a in {f"acct{i}" for i in range(8)})
    trades = store.last_trade_id(MARKET.symbol)
    if orders != entries.orders or trades != entries.trades:
        return f"orders {orders} of {entries.orders}, trades {trades} of {entries.trades}"
    return None


def catch_up(redis_url: str, db_url: str, entries: Entries, batch_entries: int
             ) -> dict[str, Any]:
    """All entries in Redis first; the service writes them to an empty database."""

    async def main() -> dict[str, Any]:
        with open_store(db_url) as store:
            topology = Topology([redis_url])
            await topology.initialize()
            service = HistoryService(store, topology, [MARKET.symbol], [0],
                                     batch_entries=batch_entries, stats_interval_s=3600)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(service.run(stop))
            while service.counters.entries < len(entries.items):
                if task.done():
                    task.result()
                    raise RuntimeError("the history service stopped")
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - started
            stop.set()
            await task
            await topology.aclose()
            c = service.counters
            wrong = _check(store, entries)
            return {"seconds": round(elapsed, 3),
                    "orders_per_s": round(entries.commands / elapsed),
                    "new_orders_per_s": round(entries.orders / elapsed),
                    "entries_per_s": round(c.entries / elapsed),
                    "events_per_s": round(c.events / elapsed),
                    "rows_per_s": round(c.rows / elapsed),
                    "batches": c.batches, "write_share": round(c.write_s / elapsed, 3),
                    "error": wrong}

    return asyncio.run(main())


def live(redis_url: str, db_url: str, entries: Entries, rate: float, directory: Path
         ) -> dict[str, Any]:
    """A real ``streamex history`` follows while the entries arrive at ``rate`` orders/s."""
    config = Config(markets=(MARKET,), risk=RiskConfig(shards=1),
                    history=HistoryConfig(url=db_url))
    config_path = directory / "live.toml"
    config_path.write_text(dump_config(config))
    config_path.chmod(0o600)
    with open_store(db_url):
        pass  # migrated before the clock starts
    proc = subprocess.Popen([sys.executable, "-m", "streamex", "history", "--config",
                             str(config_path), "--redis-url", redis_url],
                            stdout=subprocess.DEVNULL, stderr=(directory / "live.log").open("w"))
    client = redis.Redis.from_url(redis_url)
    added: list[tuple[str, bytes, float]] = []  # appended by the feeder (atomic), in order
    added_at: dict[tuple[str, bytes], float] = {}
    try:
        deadline = time.monotonic() + 30
        log_path = directory / "live.log"
        while "event=ready" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamex history did not start:\n{log_path.read_text()}")
            time.sleep(0.01)
        entries_per_s = len(entries.items) / entries.commands * rate
        per_tick = max(1, round(entries_per_s * 0.01))

        def feed() -> None:
            feeder = redis.Redis.from_url(redis_url)
            t0 = time.monotonic()
            for i in range(0, len(entries.items), per_tick):
                chunk = entries.items[i:i + per_tick]
                now = time.monotonic()
                for (key, _, _), entry_id in zip(chunk, _xadd(feeder, chunk), strict=True):
                    added.append((key, entry_id, now))
                ahead = t0 + (i + per_tick) / entries_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            feeder.close()

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        lags: list[float] = []
        done: dict[str, bytes] = {}
        with open_store(db_url) as store:
            streams = {out_stream(MARKET.symbol): MARKET.symbol, risk_keys(0).output: "acct-0"}
            pending: dict[str, list[bytes]] = {key: [] for key in streams}
            seen = 0
            stop_at = None
            while True:
                items = added[seen:]
                seen += len(items)
                for key, entry_id, at in items:
                    pending[key].append(entry_id)
                    added_at[(key, entry_id)] = at
                now = time.monotonic()
                for key, name in streams.items():
                    position = store.position(name)
                    if position is None:
                        continue
                    last = position[0].encode()
                    if done.get(key) == last:
                        continue
                    done[key] = last
                    ids = pending[key]
                    cut = 0
                    while cut < len(ids) and _id(ids[cut]) <= _id(last):
                        cut += 1
                    lags += [now - added_at[(key, i)] for i in ids[:cut]]
                    del ids[:cut]
                if not thread.is_alive() and seen == len(added) and len(lags) == seen:
                    break
                if stop_at is None and not thread.is_alive():
                    stop_at = now + 30
                if stop_at is not None and now > stop_at:
                    raise RuntimeError("streamex history fell behind for good")
                time.sleep(POLL_S)
            wrong = _check(store, entries)
        lags.sort()
        return {"rate_orders_per_s": rate, "entries_per_s": round(entries_per_s),
                "lag_ms_p50": round(_pct(lags, 0.5) * 1000, 1),
                "lag_ms_p99": round(_pct(lags, 0.99) * 1000, 1),
                "lag_ms_p999": round(_pct(lags, 0.999) * 1000, 1),
                "lag_ms_max": round(lags[-1] * 1000, 1), "error": wrong}
    finally:
        proc.terminate()
        proc.wait(30)
        client.close()


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, n = entry_id.partition(b"-")
    return int(ms), int(n or 0)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def run(args: argparse.Namespace) -> int:
    if args.orders < 1 or args.per_entry < 1 or args.batch_entries < 1 or args.rate < 0:
        print("streamex bench history: --orders, --per-entry and --batch-entries must be "
              "positive, --rate not negative", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    made = time.perf_counter()
    entries = make_entries(args.orders, args.per_entry, args.seed)
    say(f"flow: {args.orders:,} order messages -> {len(entries.items):,} :out entries, "
        f"{entries.events:,} events ({entries.orders:,} orders, {entries.trades:,} trades, "
        f"{entries.balance_changes:,} balance changes), made in "
        f"{time.perf_counter() - made:.1f} s")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {}
    failed = False
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="streamex-bench-history-")))
        pg = None
        if "postgresql" in kinds:
            pg = args.pg_url or stack.enter_context(local_postgres())
        for kind in kinds:
            base = "sqlite" if kind == "sqlite" else pg
            assert base is not None
            result: dict[str, Any] = {}
            with RedisServer() as server:
                client = redis.Redis.from_url(server.url)
                for i in range(0, len(entries.items), 5000):
                    _xadd(client, entries.items[i:i + 5000])
                result["catch_up"] = catch_up(server.url, _empty(base, directory, "catch-up"),
                                              entries, args.batch_entries)
                c = result["catch_up"]
                say(f"{kind:10} catch-up  {c['orders_per_s']:9,} orders/s "
                    f"({c['new_orders_per_s']:,} new) "
                    f"{c['entries_per_s']:8,} entries/s {c['events_per_s']:9,} events/s "
                    f"{c['rows_per_s']:9,} rows/s ({c['batches']} transactions, "
                    f"{c['write_share']:.0%} of the time in the database)"
                    f"{'  WRONG: ' + c['error'] if c['error'] else ''}")
                failed = failed or bool(c["error"])
                if args.rate:
                    client.flushall()
                    result["live"] = live(server.url, _empty(base, directory, "live"), entries,
                                          args.rate, directory)
                    lv = result["live"]
                    say(f"{kind:10} live at {args.rate:,.0f} orders/s ({lv['entries_per_s']:,} "
                        f"entries/s): lag p50 {lv['lag_ms_p50']} ms p99 {lv['lag_ms_p99']} ms "
                        f"p99.9 {lv['lag_ms_p999']} ms max {lv['lag_ms_max']} ms"
                        f"{'  WRONG: ' + lv['error'] if lv['error'] else ''}")
                    failed = failed or bool(lv["error"])
                client.close()
            results[kind] = result
    load = os.getloadavg()
    summary = {"bench": "history", "orders": entries.commands, "new_orders": entries.orders,
               "entries": len(entries.items), "events": entries.events,
               "per_entry": args.per_entry, "batch_entries": args.batch_entries,
               **results, "python": platform.python_version(),
               "load_1m": round(load[0], 2), "load_5m": round(load[1], 2)}
    say(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cpus)")
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

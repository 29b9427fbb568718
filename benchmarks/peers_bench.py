"""``streamex bench peers``: streamex's matching core side by side with pure-Python peers.

What it measures: messages/s (best and median of ``--runs``; by the wall clock,
and per second of the process's CPU time, which a busy machine disturbs less) of
one seeded flow of limit places, cancels and modifies (``benchmarks.peer_flow``:
``realistic_flow`` restricted to what every engine supports; a modify is a cancel
plus a new limit order) replayed through

* streamex: ``matching.book.OrderBook.apply`` (its events are the reports);
* ``lightmatchingengine`` (``LightMatchingEngine.add_order`` returns the order and
  its trades, ``cancel_order`` the canceled order);
* ``pyorderbook`` (``Book.match`` returns a ``TradeBlotter`` with the trades,
  ``Book.cancel`` returns None);
* dyn4mik3/OrderBook (PyPI ``orderbook`` 0.1.2): Python 2 code (implicit relative
  imports, ``cStringIO``, ``print`` statements) that does not import on Python 3;
  the benchmark tries, and prints why it is skipped.

Every engine does the same work per message inside the timed loop: build its own
input from the op tuple (a ``Place``/``Cancel`` struct; a peer's arguments or
``Order``, and the dict from op ids to the peer's own order ids or objects that its
API needs), make the call(s), and append what each call returns to one list. A modify
is one message and two calls. The reports of a run stay alive until it ends, so the
garbage collector's full passes grow with the run: ``--gc tuned`` applies the
services' settings (``streamex.gc_tuning``) to the whole process, so to every
engine alike. Runs are interleaved (run 1 of every engine, then run
2, ...) so that a change of the machine's load hits all of them alike; the load
average is printed before and after.

Same trades, precisely: after each run the reports are normalised to the list, in
order, of maker fills ``(taker id, maker id, price in ticks, qty in lots)``, ids
being the flow's order ids (streamex: every ``Trade`` event; lightmatchingengine:
the trades of an ``add_order`` call that are not the taker's own per-level summary,
its ids mapped back; pyorderbook: every ``Trade`` of the blotter, ``Decimal``
prices made ``int``). Every engine's list must equal streamex's, and so must its
final book (open orders as ``(id, side, price, open qty)``); otherwise the
benchmark prints the first difference and exits 1. That pins price-time priority
too, not only the prices and sizes each aggressor got.

Cost: the flow's generation (two passes of the matching core) and then
``runs`` x engines replays of it; pyorderbook and lightmatchingengine are much
slower per message (lightmatchingengine scans a side's price levels for the best
on every place), so ``--messages 200000 --runs 5`` takes a few minutes.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import matching
from benchmarks.peer_flow import ACCOUNT, CANCEL, MODIFY, PLACE, Op, peer_flow
from contract.commands import Cancel, Place
from contract.events import Trade
from contract.market import DEFAULT_MARKETS
from matching.book import OrderBook
from streamex.gc_tuning import tune_gc

MARKET = DEFAULT_MARKETS[0]
SYMBOL = MARKET.symbol

Fill = tuple[str, str, int, int]
"""``(taker order id, maker order id, price, qty)`` of one maker's fill."""
Resting = tuple[str, str, int, int]
"""``(order id, side, price, open qty)`` of an open order."""


@dataclass
class Run:
    """One replay: its times, the list of what the engine returned, and the engine."""

    seconds: float
    cpu_seconds: float
    """The process's CPU time (``time.process_time``): not counting time descheduled."""
    reports: list[Any]
    engine: Any
    ids: dict[str, Any]
    """Flow order id -> the peer's own order id or object (empty for streamex)."""


@dataclass(frozen=True)
class Engine:
    """An engine under test: how to replay the ops, and to read a run back."""

    name: str
    version: str
    replay: Callable[[Sequence[Op]], Run]
    fills: Callable[[Sequence[Op], Run], list[Fill]]
    book: Callable[[Run], list[Resting]]


# -- streamex -------------------------------------------------------------------------


def replay_streamex(ops: Sequence[Op]) -> Run:
    """Apply ``ops`` to a fresh ``OrderBook``; the reports are ``apply``'s event lists.
    O(len(ops))."""
    book = OrderBook(MARKET)
    apply = book.apply
    reports: list[Any] = []
    add = reports.append
    t0, c0 = time.perf_counter(), time.process_time()
    for kind, entry_id, target, side, price, qty in ops:
        if kind == PLACE:
            add(apply(entry_id, Place(ACCOUNT, side, "limit", qty, price,  # type: ignore[arg-type]
                                      stp="none")))
        elif kind == CANCEL:
            add(apply(entry_id, Cancel(ACCOUNT, order_id=target)))
        else:
            add(apply(entry_id, Cancel(ACCOUNT, order_id=target)))
            add(apply(entry_id, Place(ACCOUNT, side, "limit", qty, price,  # type: ignore[arg-type]
                                      stp="none")))
    return Run(time.perf_counter() - t0, time.process_time() - c0, reports, book, {})


def fills_streamex(ops: Sequence[Op], run: Run) -> list[Fill]:
    """Every ``Trade`` event, in order."""
    return [(e.taker_order_id, e.maker_order_id, e.price, e.qty)
            for events in run.reports for e in events if type(e) is Trade]


def book_streamex(run: Run) -> list[Resting]:
    """The open orders of the final book."""
    return sorted((o.order_id, o.side, o.price, o.leaves) for o in run.engine.orders.values())


# -- lightmatchingengine --------------------------------------------------------------


def _lme_replay(module: ModuleType) -> Callable[[Sequence[Op]], Run]:
    def replay(ops: Sequence[Op]) -> Run:
        """Replay ``ops`` through a fresh ``LightMatchingEngine``."""
        engine = module.LightMatchingEngine()
        add_order, cancel_order = engine.add_order, engine.cancel_order
        buy, sell = module.Side.BUY, module.Side.SELL
        ids: dict[str, int] = {}
        reports: list[Any] = []
        add = reports.append
        t0, c0 = time.perf_counter(), time.process_time()
        for kind, entry_id, target, side, price, qty in ops:
            if kind == PLACE:
                r = add_order(SYMBOL, price, qty, buy if side == "buy" else sell)
                ids[entry_id] = r[0].order_id
                add(r)
            elif kind == CANCEL:
                add(cancel_order(ids[target], SYMBOL))
            else:
                add(cancel_order(ids[target], SYMBOL))
                r = add_order(SYMBOL, price, qty, buy if side == "buy" else sell)
                ids[entry_id] = r[0].order_id
                add(r)
        return Run(time.perf_counter() - t0, time.process_time() - c0, reports, engine, ids)
    return replay


def fills_lme(ops: Sequence[Op], run: Run) -> list[Fill]:
    """The makers' trades of each ``add_order`` call (not the taker's per-level
    summaries), ids mapped back to the flow's."""
    flow_id = {v: k for k, v in run.ids.items()}
    out: list[Fill] = []
    i = 0
    for kind, entry_id, _target, _side, _price, _qty in ops:
        if kind == CANCEL:
            i += 1
            continue
        if kind == MODIFY:
            i += 1  # the cancel's report
        order, trades = run.reports[i]
        i += 1
        for t in trades:
            if t.order_id != order.order_id:
                out.append((entry_id, flow_id[t.order_id], int(t.trade_price), int(t.trade_qty)))
    return out


def _lme_book(module: ModuleType) -> Callable[[Run], list[Resting]]:
    def book(run: Run) -> list[Resting]:
        """The orders with open quantity (filled makers stay in ``order_id_map``)."""
        flow_id = {v: k for k, v in run.ids.items()}
        return sorted(
            (flow_id[o.order_id], "buy" if o.side == module.Side.BUY else "sell",
             int(o.price), int(o.leaves_qty))
            for ob in run.engine.order_books.values() for o in ob.order_id_map.values()
            if o.leaves_qty > 0)
    return book


# -- pyorderbook ----------------------------------------------------------------------


def _pob_replay(module: ModuleType) -> Callable[[Sequence[Op]], Run]:
    def replay(ops: Sequence[Op]) -> Run:
        """Replay ``ops`` through a fresh ``pyorderbook.Book``."""
        book = module.Book()
        match, cancel = book.match, book.cancel
        order_of = module.Order
        bid, ask = module.Side.BID, module.Side.ASK
        ids: dict[str, Any] = {}
        reports: list[Any] = []
        add = reports.append
        t0, c0 = time.perf_counter(), time.process_time()
        for kind, entry_id, target, side, price, qty in ops:
            if kind == PLACE:
                o = ids[entry_id] = order_of(bid if side == "buy" else ask, SYMBOL, price, qty)
                add(match(o))
            elif kind == CANCEL:
                add(cancel(ids[target]))
            else:
                add(cancel(ids[target]))
                o = ids[entry_id] = order_of(bid if side == "buy" else ask, SYMBOL, price, qty)
                add(match(o))
        return Run(time.perf_counter() - t0, time.process_time() - c0, reports, book, ids)
    return replay


def fills_pob(ops: Sequence[Op], run: Run) -> list[Fill]:
    """Every ``Trade`` of every blotter, ids mapped back, prices made ``int``."""
    flow_id = {o.id: k for k, o in run.ids.items()}
    return [(flow_id[t.incoming_order_id], flow_id[t.standing_order_id], int(t.fill_price),
             int(t.fill_quantity))
            for r in run.reports if r is not None for t in r.trades]


def _pob_book(module: ModuleType) -> Callable[[Run], list[Resting]]:
    def book(run: Run) -> list[Resting]:
        """The orders in ``order_map`` (filled and canceled ones are removed from it)."""
        flow_id = {o.id: k for k, o in run.ids.items()}
        return sorted(
            (flow_id[o.id], "buy" if o.side == module.Side.BID else "sell", int(o.price),
             int(o.quantity))
            for o in run.engine.order_map.values())
    return book


# -- the peers ------------------------------------------------------------------------

PEERS = ("lightmatchingengine", "pyorderbook", "orderbook")
"""The PyPI distributions tried, in order (``orderbook``: dyn4mik3/OrderBook)."""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _import_quietly(name: str) -> ModuleType:
    """Import ``name`` and undo what it does to the root logger (pyorderbook calls
    ``logging.basicConfig(level=INFO)`` on import)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return importlib.import_module(name)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def load_peers(names: Sequence[str] = PEERS) -> tuple[list[Engine], dict[str, str]]:
    """The peers among ``names`` that import, and why each other one is skipped."""
    engines: list[Engine] = []
    skipped: dict[str, str] = {}
    for name in names:
        version = _version(name)
        if version == "?":
            skipped[name] = f"not installed (pip install {name})"
            continue
        try:
            if name == "lightmatchingengine":
                m = _import_quietly("lightmatchingengine.lightmatchingengine")
                engines.append(Engine(name, version, _lme_replay(m), fills_lme, _lme_book(m)))
            elif name == "pyorderbook":
                m = _import_quietly("pyorderbook")
                engines.append(Engine(name, version, _pob_replay(m), fills_pob, _pob_book(m)))
            elif name == "orderbook":
                _import_quietly("orderbook")
                skipped[name] = f"{name} {version} imports, but this benchmark has no adapter"
            else:
                skipped[name] = "unknown peer"
        except Exception as exc:  # a peer that does not import is reported, not fatal
            note = (" (Python 2 code: implicit relative imports, cStringIO, print "
                    "statements)" if name == "orderbook" else "")
            skipped[name] = (f"{name} {version} does not import on Python "
                             f"{sys.version.split()[0]}: {type(exc).__name__}: {exc}{note}")
    return engines, skipped


STREAMEX = Engine("streamex", "core", replay_streamex, fills_streamex, book_streamex)


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> str | None:
    """None if equal; else where and how ``b`` first differs from ``a``."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"item {i}: {x} vs {y}"
    if len(a) != len(b):
        return f"lengths {len(a)} vs {len(b)}"
    return None


def check(engine: Engine, ops: Sequence[Op], run: Run, fills: list[Fill],
          book: list[Resting]) -> str | None:
    """None if ``run`` has streamex's ``fills`` and final ``book``; else the difference."""
    diff = first_difference(fills, engine.fills(ops, run))
    if diff is not None:
        return f"{engine.name}: fills differ from streamex's at {diff}"
    diff = first_difference(book, engine.book(run))
    if diff is not None:
        return f"{engine.name}: final book differs from streamex's at {diff}"
    return None


# -- the command ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=200_000,
                        help="messages of realistic_flow to convert (about as many ops)")
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions per engine")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated peers to try (default: all)")
    parser.add_argument("--gc", choices=("default", "tuned"), default="default",
                        help="default: CPython's collector settings; tuned: the services' "
                             "(streamex.gc_tuning.tune_gc), for every engine alike")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")


def run(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    engines, skipped = load_peers([p for p in args.peers.split(",") if p])
    for name, why in skipped.items():
        print(f"skipped {why}" if why.startswith(name) else f"skipped {name}: {why}")
    t0 = time.perf_counter()
    flow = peer_flow(args.messages, args.seed, MARKET)
    ops = flow.ops
    print(f"generated {len(ops):,} ops from {args.messages:,} messages of realistic_flow "
          f"({flow.dropped:,} cancels/amends of orders no longer open dropped) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)

    if args.gc == "tuned":
        tune_gc()  # process-wide: after the flow is built, before any engine runs
    everyone = [STREAMEX, *engines]
    seconds: dict[str, list[float]] = {e.name: [] for e in everyone}
    cpu: dict[str, list[float]] = {e.name: [] for e in everyone}
    counts: dict[str, tuple[int, int]] = {}
    fills: list[Fill] = []
    book: list[Resting] = []
    for i in range(args.runs):
        for engine in everyone:
            gc.collect()
            r = engine.replay(ops)
            if engine is STREAMEX:
                got_fills, got_book = fills_streamex(ops, r), book_streamex(r)
                if i == 0:
                    fills, book = got_fills, got_book
                elif (got_fills, got_book) != (fills, book):
                    print("streamex: trades differ between runs", file=sys.stderr)
                    return 1
            else:
                problem = check(engine, ops, r, fills, book)
                if problem is not None:
                    print(problem, file=sys.stderr)
                    return 1
            counts[engine.name] = (len(r.reports), len(fills))
            seconds[engine.name].append(r.seconds)
            cpu[engine.name].append(r.cpu_seconds)
            print(f"run {i + 1} {engine.name}: {len(ops) / r.seconds:,.0f} msgs/s "
                  f"({len(ops) / r.cpu_seconds:,.0f} per CPU second)", file=sys.stderr)
            del r
    load_after = os.getloadavg()

    results: dict[str, dict[str, Any]] = {}
    for e in everyone:
        s, c = seconds[e.name], cpu[e.name]
        results[e.name] = {
            "version": e.version,
            "msgs_per_s": round(len(ops) / min(s)),
            "median_msgs_per_s": round(len(ops) / statistics.median(s)),
            "seconds": round(min(s), 4),
            "cpu_msgs_per_s": round(len(ops) / min(c)),
            "median_cpu_msgs_per_s": round(len(ops) / statistics.median(c)),
            "reports": counts[e.name][0],
            "fills": counts[e.name][1],
        }
    peers = [e.name for e in engines]
    # The fastest peer by its median: one lucky run on a busy machine does not pick it.
    fastest = max(peers, key=lambda n: results[n]["median_msgs_per_s"]) if peers else None
    sx = results["streamex"]
    result: dict[str, Any] = {
        "messages": len(ops),
        "source_messages": args.messages,
        "modifies": sum(1 for op in ops if op[0] == MODIFY),
        "cancels": sum(1 for op in ops if op[0] == CANCEL),
        "fills": len(fills),
        "open_orders_at_end": len(book),
        "runs": args.runs,
        "seed": args.seed,
        "gc": args.gc,
        "engines": results,
        "skipped": skipped,
        "same_trades": True,
        "fastest_peer": fastest,
        "ratio_best": (round(sx["msgs_per_s"] / results[fastest]["msgs_per_s"], 2)
                       if fastest else None),
        "ratio_median": (round(sx["median_msgs_per_s"] / results[fastest]["median_msgs_per_s"],
                               2) if fastest else None),
        "cpu_ratio_best": (round(sx["cpu_msgs_per_s"] / results[fastest]["cpu_msgs_per_s"], 2)
                           if fastest else None),
        "cpu_ratio_median": (round(sx["median_cpu_msgs_per_s"]
                                   / results[fastest]["median_cpu_msgs_per_s"], 2)
                             if fastest else None),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "compiled": matching.COMPILED,
    }
    print(f"{len(ops):,} ops ({result['cancels']:,} cancels, {result['modifies']:,} modifies), "
          f"{len(fills):,} fills, identical in every engine; best / median of {args.runs}:")
    for name, res in results.items():
        print(f"  {name:<20} {res['msgs_per_s']:>10,} msgs/s  "
              f"median {res['median_msgs_per_s']:>10,};  per CPU second "
              f"{res['cpu_msgs_per_s']:>10,}  median {res['median_cpu_msgs_per_s']:>10,}")
    if fastest:
        print(f"streamex / {fastest} (fastest peer by median): {result['ratio_best']}x best, "
              f"{result['ratio_median']}x median; per CPU second {result['cpu_ratio_best']}x "
              f"best, {result['cpu_ratio_median']}x median")
    print(f"core: {'compiled (mypyc)' if matching.COMPILED else 'pure Python'}; "
          f"gc: {args.gc}; load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after ({os.cpu_count()} CPUs)")
    if args.json:
        print(json.dumps(result))
    return 0

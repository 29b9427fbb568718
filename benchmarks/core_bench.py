"""``streamex bench core``: the matching core alone on a realistic flow.

Replays ``benchmarks.flow.realistic_flow`` (generated before timing; by default
10% of its passive places are icebergs, stops and GTD orders, ``--order-types
0`` gives the flow without them) through a fresh ``OrderBook`` with the events
built, and reports messages/s (best and median of ``--runs``). A second pass
times every message with ``perf_counter_ns`` for p50/p99/p99.9/max, next to the floor: the same loop
timing an empty call. The final book of every run is checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

import matching
from benchmarks.flow import realistic_flow
from contract.commands import Command, Place
from contract.events import Trade
from contract.market import DEFAULT_MARKETS
from contract.snapshot import encode_snapshot
from matching.book import OrderBook
from matching.snapshot import take_snapshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=500_000, help="messages to replay")
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--order-types", type=float, default=0.1, metavar="SHARE",
                        help="share of passive places that are icebergs, stops or GTD "
                             "orders (0: plain limit orders only)")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")


def _percentiles(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)
    n = len(s)

    def at(q: float) -> float:
        return s[min(n - 1, int(q * n))] / 1000.0

    return {"p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": s[-1] / 1000}


def replay(flow: Sequence[tuple[str, Command]]) -> tuple[float, OrderBook, int]:
    """Apply ``flow`` to a fresh book; (seconds, book, events built). O(len(flow))."""
    book = OrderBook(DEFAULT_MARKETS[0])
    apply = book.apply
    events = 0
    t0 = time.perf_counter()
    for input_id, cmd in flow:
        events += len(apply(input_id, cmd))
    return time.perf_counter() - t0, book, events


def run(args: argparse.Namespace) -> int:
    market = DEFAULT_MARKETS[0]
    t0 = time.perf_counter()
    flow = realistic_flow(market, args.messages, args.seed, order_types=args.order_types)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(flow):,} messages in {gen_s:.1f} s", file=sys.stderr)

    seconds: list[float] = []
    final: bytes | None = None
    events = 0
    for i in range(args.runs):
        dt, book, events = replay(flow)
        state = encode_snapshot(take_snapshot(book))
        if final is None:
            final = state
            book._check()
        elif state != final:
            print("final book differs between runs", file=sys.stderr)
            return 1
        seconds.append(dt)
        print(f"run {i + 1}: {len(flow) / dt:,.0f} msgs/s", file=sys.stderr)

    # Per-message latency next to the timer floor, on the same flow.
    book = OrderBook(market)
    apply = book.apply
    clock = time.perf_counter_ns
    lat: list[int] = []
    floor: list[int] = []
    trading = 0
    for input_id, cmd in flow:
        t = clock()
        ev = apply(input_id, cmd)
        lat.append(clock() - t)
        t = clock()
        _noop(input_id, cmd)
        floor.append(clock() - t)
        if any(type(e) is Trade for e in ev):
            trading += 1
    best = min(seconds)
    result = {
        "messages": len(flow),
        "seconds": round(best, 4),
        "msgs_per_s": round(len(flow) / best),
        "median_msgs_per_s": round(len(flow) / statistics.median(seconds)),
        "runs": args.runs,
        "events": events,
        "trading_fraction": round(trading / len(flow), 4),
        "order_types_share_of_passive_places": args.order_types,
        "order_types_fraction": round(sum(
            1 for _, c in flow if type(c) is Place and (
                c.type not in ("limit", "market") or c.tif == "GTD" or c.display_qty))
            / len(flow), 4),
        "resting_orders_at_end": len(book.orders),
        "latency": _percentiles(lat),
        "floor": _percentiles(floor),
        "python": sys.version.split()[0],
        "compiled": matching.COMPILED,
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(f"{result['msgs_per_s']:,} msgs/s (best of {args.runs}), "
          f"median {result['median_msgs_per_s']:,}; {events:,} events; "
          f"{result['trading_fraction']:.1%} of messages trade, "
          f"{result['order_types_fraction']:.1%} are icebergs, stops or GTD orders")
    lat_p, floor_p = result["latency"], result["floor"]
    assert isinstance(lat_p, dict) and isinstance(floor_p, dict)
    print("per message (us): " + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in lat_p.items())
          + "; floor: " + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in floor_p.items()))
    print(f"core: {'compiled (mypyc)' if matching.COMPILED else 'pure Python'}; "
          f"load average {result['load_1m']:.2f} ({os.cpu_count()} CPUs)")
    if args.json:
        print(json.dumps(result))
    return 0


def _noop(input_id: str, cmd: Command) -> None:
    return None

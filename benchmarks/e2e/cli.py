"""``streamex bench e2e`` on the command line: its arguments, and the runs it makes.

:func:`run` checks the arguments, gets the exchange (``--url`` or a local
``streamex up``, :mod:`benchmarks.e2e.launch`), makes one run or a sweep of
rising rates up to the saturation knee, prints each run's report and, with
``--json``, a JSON object last. Each run plans its requests first (O(n),
reported on stderr) and then loads the exchange for ``--warmup + --duration``
seconds on a uvloop event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgspec
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.e2e.launch import Endpoints, bench_markets, exchange
from benchmarks.e2e.load import LoadRun, RequestFailed
from benchmarks.e2e.plot import write_plot
from benchmarks.e2e.report import RunResult, render, render_sweep, saturated, summary
from benchmarks.e2e.schedule import build_plan
from contract.market import Market
from streamex.bench_cmd import INSTALL_HINT

SWEEP_RATES = (1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000,
               75_000, 100_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=1000.0, help="offered orders/s")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of measured load (per step with --sweep)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before measuring (same rate, not recorded)")
    parser.add_argument("--connections", type=int, default=2,
                        help="order-entry connections, alternately logged on to each account")
    parser.add_argument("--markets", type=int, default=1, help="markets to trade")
    parser.add_argument("--url", help="gateway websocket URL (default: start an exchange)")
    parser.add_argument("--risk", choices=("on", "off"), default="on",
                        help="the risk stage of the exchange started (or at --url): on "
                             "(market buys by quote_qty) or off (default: %(default)s)")
    parser.add_argument("--compare-risk", action="store_true",
                        help="run the same load with the risk stage off, then on, in one "
                             "run, and compare")
    parser.add_argument("--compare-metrics", type=int, metavar="PAIRS",
                        help="alternate PAIRS runs with [metrics] enabled = false and true "
                             "(scraping every service's /metrics each --scrape-interval), "
                             "each on a fresh exchange, and print the on/off ratios")
    parser.add_argument("--scrape-interval", type=float, default=1.0, metavar="SECONDS",
                        help="with --compare-metrics: how often the on runs are scraped")
    parser.add_argument("--md-url", help="market-data websocket URL (with --url)")
    parser.add_argument("--api-key", action="append", default=[],
                        help="account API key (with --url; repeat for a second account)")
    parser.add_argument("--secret", action="append", default=[],
                        help="account secret, one per --api-key")
    parser.add_argument("--redis-url", help="the exchange's Redis, for the floor (with --url)")
    parser.add_argument("--seed", type=int, default=1, help="order-flow seed")
    parser.add_argument("--floor-samples", type=int, default=2000,
                        help="round trips timed for each part of the floor")
    parser.add_argument("--sweep", action="store_true",
                        help="raise the rate step by step up to the saturation knee")
    parser.add_argument("--max-rate", type=float, default=float(SWEEP_RATES[-1]),
                        help="highest rate a sweep tries")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG of the results (matplotlib)")
    parser.add_argument("--json", action="store_true", help="print a JSON object last")
    parser.add_argument("--cluster", type=int, metavar="N",
                        help="run on one server, then on a local cluster of N primaries + N "
                             "replicas, in the same run, and compare")
    parser.add_argument("--durability", choices=("async", "replicated"),
                        help="with --cluster: also run the cluster with this durability "
                             "(replicated: received after a replica has the order)")


async def _markets_of(endpoints: Endpoints, count: int) -> tuple[Market, ...]:
    """The first ``count`` markets the gateway lists (``markets`` method)."""
    async with connect(endpoints.url, compression=None, open_timeout=10) as ws:
        await ws.send(msgspec.json.encode({"id": "m", "method": "markets"}), text=True)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if "result" not in reply:
        raise RequestFailed(f"markets: {reply.get('error')}")
    listed = [Market(**m) for m in reply["result"]["markets"]]
    return tuple(listed[:count])


def _one_run(endpoints: Endpoints, markets: Sequence[Market], rate: float,
             args: argparse.Namespace, progress: bool, risk: bool | None = None) -> RunResult:
    n = int(round(rate * (args.duration + args.warmup)))
    t = time.monotonic()
    budget_buys = args.risk == "on" if risk is None else risk
    plan = build_plan(markets, n, args.connections, len(endpoints.credentials), args.seed,
                      budget_buys)
    print(f"planned {n:,} requests in {time.monotonic() - t:.1f} s", file=sys.stderr)
    run = LoadRun(endpoints, plan, rate, args.duration, args.warmup, args.connections,
                  args.floor_samples, progress)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run.run())


def _check_args(args: argparse.Namespace) -> str | None:
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        return "--rate and --duration must be positive, --warmup not negative"
    if args.connections < 1 or args.markets < 1:
        return "--connections and --markets must be at least 1"
    if args.url:
        if not args.md_url:
            return "--url needs --md-url"
        if not args.api_key or len(args.api_key) != len(args.secret):
            return "--url needs --api-key and --secret (one --secret per --api-key)"
    if args.compare_risk and (args.url or args.sweep or args.plot or args.cluster):
        return "--compare-risk starts its exchanges: no --url, --sweep, --plot or --cluster"
    if args.compare_metrics is not None:
        if args.url or args.sweep or args.plot or args.cluster or args.compare_risk:
            return ("--compare-metrics starts its exchanges: no --url, --sweep, --plot, "
                    "--cluster or --compare-risk")
        if not 1 <= args.compare_metrics <= 20 or args.scrape_interval <= 0:
            return "--compare-metrics: 1..20 pairs; --scrape-interval must be positive"
    if args.cluster is not None:
        if args.url or args.sweep or args.plot:
            return "--cluster starts its exchanges: no --url, --sweep or --plot with it"
        if not 1 <= args.cluster <= 16:
            return "--cluster: 1..16 primaries"
    elif args.durability:
        return "--durability needs --cluster"
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            return f"--plot needs matplotlib: {INSTALL_HINT} (or pip install matplotlib)"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        print(f"streamex bench e2e: {problem}", file=sys.stderr)
        return 2
    if args.cluster is not None:
        return _compare_layouts(args)
    if args.compare_risk:
        return _compare_risk(args)
    if args.compare_metrics is not None:
        return _compare_metrics(args)
    progress = sys.stderr.isatty()
    results: list[RunResult] = []
    steps: list[dict[str, Any]] = []
    try:
        with exchange(args, risk=args.risk == "on") as endpoints:
            if args.url:
                markets = asyncio.run(_markets_of(endpoints, args.markets))
            else:
                markets = bench_markets(args.markets)
            rates = ([r for r in SWEEP_RATES if r <= args.max_rate] if args.sweep
                     else [args.rate])
            for rate in rates:
                result = _one_run(endpoints, markets, rate, args, progress)
                results.append(result)
                s = summary(result)
                steps.append(s)
                print(render(s), flush=True)
                if args.sweep and saturated(s):
                    break
    except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
        print(f"streamex bench e2e: {exc}", file=sys.stderr)
        return 1
    if not steps:
        return 1
    final = dict(steps[-1])
    if args.sweep:
        print(render_sweep(steps), flush=True)
        sustained = [s for s in steps if not saturated(s)]
        final["knee_rate"] = steps[-1]["rate"] if saturated(steps[-1]) else None
        final["max_sustained_rate"] = sustained[-1]["rate"] if sustained else None
        final["sweep"] = [{k: s[k] for k in ("rate", "achieved_rate", "p50_us", "p90_us",
                                             "p99_us", "p999_us", "max_us", "floor_us",
                                             "p50_ratio", "generator_cpu", "aborted")}
                          for s in steps]
    if args.plot:
        write_plot(args.plot, results, steps)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(final), flush=True)
    return 0 if all(s["aborted"] is None for s in steps) else 1


def _compare_layouts(args: argparse.Namespace) -> int:
    """The same load on one server, then on a local cluster (async, and ``--durability``)."""
    layouts: list[tuple[str, int | None, str | None]] = [
        ("single", None, None), ("cluster", args.cluster, "async")]
    if args.durability == "replicated":
        layouts.append(("cluster_replicated", args.cluster, "replicated"))
    out: dict[str, Any] = {}
    for name, cluster, durability in layouts:
        print(f"-- {name}: " + (f"cluster of {cluster} primaries, durability {durability}"
                                if cluster else "one server"), flush=True)
        try:
            with exchange(args, cluster, durability, args.risk == "on") as endpoints:
                result = _one_run(endpoints, bench_markets(args.markets), args.rate, args,
                                  sys.stderr.isatty())
        except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
            print(f"streamex bench e2e: {name}: {exc}", file=sys.stderr)
            return 1
        s = summary(result)
        print(render(s), flush=True)
        out[name] = s
        if s["aborted"] is not None:
            return 1
    for name in [n for n, _, _ in layouts if n != "single"]:
        out[f"{name}_p50_vs_single"] = round(out[name]["p50_us"] / out["single"]["p50_us"], 3)
        out[f"{name}_p99_vs_single"] = round(out[name]["p99_us"] / out["single"]["p99_us"], 3)
    print("  ".join(f"{k} {v}" for k, v in out.items() if k.endswith("_vs_single")), flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


def _compare_risk(args: argparse.Namespace) -> int:
    """The same load on an exchange without the risk stage, then with it."""
    out: dict[str, Any] = {}
    for name, risk in (("risk_off", False), ("risk_on", True)):
        print(f"-- {name}", flush=True)
        try:
            with exchange(args, risk=risk) as endpoints:
                result = _one_run(endpoints, bench_markets(args.markets), args.rate, args,
                                  sys.stderr.isatty(), risk)
        except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
            print(f"streamex bench e2e: {name}: {exc}", file=sys.stderr)
            return 1
        s = summary(result)
        print(render(s), flush=True)
        out[name] = s
        if s["aborted"] is not None:
            return 1
    out["risk_on_p50_vs_off"] = round(out["risk_on"]["p50_us"] / out["risk_off"]["p50_us"], 3)
    out["risk_on_p99_vs_off"] = round(out["risk_on"]["p99_us"] / out["risk_off"]["p99_us"], 3)
    print(f"risk on / off: p50 {out['risk_on_p50_vs_off']}  p99 {out['risk_on_p99_vs_off']}",
          flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


class _Scraper:
    """GETs every URL each ``interval`` seconds from a thread, as Prometheus would; counts
    the scrapes and the failures."""

    def __init__(self, urls: Sequence[str], interval: float) -> None:
        self.urls = urls
        self.interval = interval
        self.scrapes = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def __enter__(self) -> _Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        resp.read()
                    self.scrapes += 1
                except OSError:
                    self.failures += 1


def _cpu_per_order_us(s: dict[str, Any]) -> float:
    """The exchange's CPU time (every process) per request, in µs: the cores it used over
    the measured window over the requests per second it achieved."""
    cores = float(sum(s["exchange_cpu"].values()))
    rate = float(s["achieved_rate"]) or 1.0
    return round(cores / rate * 1e6, 2)


def _compare_metrics(args: argparse.Namespace) -> int:
    """Alternating runs with metrics off and on, each on a fresh exchange, in ABBA order
    (off, on, on, off, off, on, ...: a drift of the machine over the runs weighs on both
    alike), ``--compare-metrics`` pairs. The on runs are scraped like Prometheus would."""
    rows: list[dict[str, Any]] = []
    for pair in range(args.compare_metrics):
        for enabled in ((False, True) if pair % 2 == 0 else (True, False)):
            name = f"metrics_{'on' if enabled else 'off'}"
            print(f"-- pair {pair + 1}: {name}", flush=True)
            try:
                with exchange(args, risk=args.risk == "on", metrics=enabled) as endpoints:
                    if enabled and not endpoints.metrics_urls:
                        print("streamex bench e2e: the banner lists no /metrics URL",
                              file=sys.stderr)
                        return 1
                    with _Scraper(endpoints.metrics_urls if enabled else (),
                                  args.scrape_interval) as scraper:
                        result = _one_run(endpoints, bench_markets(args.markets), args.rate,
                                          args, sys.stderr.isatty())
            except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
                print(f"streamex bench e2e: {name}: {exc}", file=sys.stderr)
                return 1
            s = summary(result)
            print(render(s), flush=True)
            if s["aborted"] is not None:
                return 1
            row = {"pair": pair + 1, "metrics": enabled, "p50_us": s["p50_us"],
                   "p99_us": s["p99_us"], "achieved_rate": s["achieved_rate"],
                   "cpu_per_order_us": _cpu_per_order_us(s), "exchange_cpu": s["exchange_cpu"],
                   "load_average": s["load_average"], "floor_us": s["floor_us"],
                   "scrapes": scraper.scrapes, "scrape_failures": scraper.failures}
            rows.append(row)
            print(f"   cpu per order {row['cpu_per_order_us']} us, scrapes {scraper.scrapes} "
                  f"({scraper.failures} failed)", flush=True)
    off = [r for r in rows if not r["metrics"]]
    on = [r for r in rows if r["metrics"]]

    def mean(key: str, rs: list[dict[str, Any]]) -> float:
        return float(sum(r[key] for r in rs)) / len(rs)

    out: dict[str, Any] = {"runs": rows, "rate": args.rate}
    for key in ("p50_us", "p99_us", "achieved_rate", "cpu_per_order_us"):
        out[f"on_vs_off_{key}"] = round(mean(key, on) / mean(key, off), 4)
    print("metrics on / off (means over the pairs): " + "  ".join(
        f"{k[len('on_vs_off_'):]} {v}" for k, v in out.items() if k.startswith("on_vs_off_")),
        flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0

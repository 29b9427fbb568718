"""What a run measured and how it is reported: percentiles, text and JSON, CPU per process.

:class:`RunResult` holds one run's counters and histograms; :func:`summary`
turns it into the JSON-ready dict (µs at :data:`PERCENTILES`), :func:`render`
and :func:`render_sweep` into text. CPU use is read from ``getrusage`` (this
process) and ``/proc`` (the exchange's process tree: one pass over
``/proc/*/stat`` before and after the run, never during it). Cost: O(buckets)
per histogram read; none of it runs while the load does.
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.histogram import Histogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99, 100.0)
PCT_NAMES = ("p50", "p90", "p99", "p999", "p9999", "max")
PCT_LABELS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")
KNEE_ACHIEVED = 0.90
KNEE_P99_NS = 1_000_000_000
METRICS = (
    ("received", "request -> received"),
    ("new", "request -> new"),
    ("trade", "request -> taker trade"),
    ("public_trade", "request -> public trade"),
)


@dataclass
class RunResult:
    """Everything one run measured; :func:`summary` turns it into plain numbers."""

    rate: float
    duration: float
    warmup: float
    connections: int
    symbols: list[str]
    commands: dict[str, int]
    sent: int = 0
    measured: int = 0
    replies: int = 0
    places_received: int = 0
    measured_places: int = 0
    achieved_rate: float = 0.0
    hists: dict[str, Histogram] = field(default_factory=dict)
    floor: dict[str, Histogram] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected_errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    missing_replies: int = 0
    missing_new: int = 0
    unmatched_public: int = 0
    send_lag: Histogram = field(default_factory=Histogram)
    generator_cpu: float = 0.0
    wall_s: float = 0.0
    exchange_cpu: dict[str, float] = field(default_factory=dict)
    precise_timer: bool = True
    load_average: float | None = None
    aborted: str | None = None


# -- CPU accounting ------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if "-m" in argv and "streamex" in argv:
        rest = argv[argv.index("streamex") + 1:]
        role = rest[0] if rest else "streamex"
        if role == "up":
            return "streamex up"
        if role == "engine" and "--markets" in rest:
            return f"engine {rest[rest.index('--markets') + 1]}"
        return role
    return Path(argv[0].split(" ")[0]).name or str(pid)  # redis-server retitles itself


def tree_ticks(root: int | None) -> dict[int, tuple[str, int]]:
    """{pid: (name, cpu ticks)} of ``root`` and its descendants (Linux /proc)."""
    if root is None or not os.path.isdir("/proc"):
        return {}
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                parent[int(entry)], ticks[int(entry)] = stat
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: (_proc_name(pid), ticks[pid]) for pid in tree if pid in ticks}


def tree_cpu(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
             wall_s: float) -> dict[str, float]:
    """CPU use of each process over the window, as a fraction of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        used = (ticks - before.get(pid, (name, 0))[1]) / hz / wall_s
        out[name] = out.get(name, 0.0) + used
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# -- reporting ------------------------------------------------------------------------


def _us(ns: int) -> float:
    return round(ns / 1000.0, 1)


def _pcts(hist: Histogram) -> dict[str, float]:
    return {name: _us(v) for name, v in zip(PCT_NAMES, hist.percentiles(PERCENTILES),
                                             strict=True)}


def floor_percentiles(floor: dict[str, Histogram]) -> dict[str, float]:
    """ws + 2 x redis at each percentile (ws alone when Redis was not reachable), in µs."""
    ws = _pcts(floor["ws"]) if "ws" in floor else dict.fromkeys(PCT_NAMES, 0.0)
    rd = _pcts(floor["redis"]) if "redis" in floor else dict.fromkeys(PCT_NAMES, 0.0)
    return {k: round(ws[k] + 2 * rd[k], 1) for k in PCT_NAMES}


def summary(r: RunResult) -> dict[str, Any]:
    """The run as a JSON-ready dict; top-level latency fields are request -> new."""
    metrics = {name: {**_pcts(r.hists[name]), "count": r.hists[name].total}
               for name, _ in METRICS}
    floor = floor_percentiles(r.floor)
    new = metrics["new"]
    ratios = {k: (round(new[k] / floor[k], 2) if floor[k] else None) for k in PCT_NAMES}
    return {
        "rate": r.rate,
        "achieved_rate": round(r.achieved_rate, 1),
        "duration_s": r.duration,
        "warmup_s": r.warmup,
        "connections": r.connections,
        "markets": r.symbols,
        "commands": r.commands,
        "sent": r.sent,
        "replies": r.replies,
        "places_received": r.places_received,
        "measured_places": r.measured_places,
        "missing_replies": r.missing_replies,
        "missing_new": r.missing_new,
        **{f"{k}_us": new[k] for k in PCT_NAMES},
        "floor_us": floor["p50"],
        "p50_ratio": ratios["p50"],
        "p99_ratio": ratios["p99"],
        "ratios": ratios,
        "metrics": metrics,
        "floor": {"total": floor,
                  **{name: _pcts(h) for name, h in r.floor.items()}},
        "errors": dict(r.errors),
        "unexpected_errors": r.unexpected_errors,
        "outcomes": dict(r.outcomes),
        "unmatched_public_trades": r.unmatched_public,
        "send_lag_us": _pcts(r.send_lag),
        "precise_timer": r.precise_timer,
        "cpus": os.cpu_count(),
        "load_average": r.load_average,
        "generator_cpu": round(r.generator_cpu, 3),
        "exchange_cpu": {k: round(v, 3) for k, v in r.exchange_cpu.items()},
        "aborted": r.aborted,
    }


def render(s: dict[str, Any]) -> str:
    """A human-readable report of one :func:`summary`."""
    lines = [
        f"offered {s['rate']:,.0f} orders/s for {s['duration_s']:g} s "
        f"(+{s['warmup_s']:g} s warm-up) over {s['connections']} connections, "
        f"markets {', '.join(s['markets'])}",
        "  flow: " + ", ".join(f"{v:,} {k}" for k, v in s["commands"].items()),
        f"  sent {s['sent']:,}, replies {s['replies']:,}, achieved "
        f"{s['achieved_rate']:,.0f} orders/s ({s['achieved_rate'] / s['rate']:.1%} of offered)",
    ]
    if s["aborted"]:
        lines.append(f"  ABORTED: {s['aborted']}")
    head = f"  {'latency, µs (from scheduled send)':<36}" + "".join(
        f"{label:>10}" for label in PCT_LABELS) + f"{'count':>9}"
    lines.append(head)
    for name, label in METRICS:
        m = s["metrics"][name]
        lines.append(f"  {label:<36}" + "".join(f"{m[k]:>10,.0f}" for k in PCT_NAMES)
                     + f"{m['count']:>9,}")
    floor_rows = (("ws", "floor: websocket echo round trip"),
                  ("redis", "floor: redis PING (redis-py asyncio)"),
                  ("redis_raw", "       redis PING (raw socket)"),
                  ("total", "floor = ws + 2 x redis"))
    for key, label in floor_rows:
        if key in s["floor"]:
            f = s["floor"][key]
            lines.append(f"  {label:<36}" + "".join(f"{f[k]:>10,.0f}" for k in PCT_NAMES))
    ratios = s["ratios"]
    lines.append(f"  {'request -> new / floor':<36}" + "".join(
        f"{(f'{ratios[k]:.1f}x') if ratios[k] is not None else '-':>10}" for k in PCT_NAMES))
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(s["errors"].items())) or "none"
    lines.append(f"  error replies: {errors} (unexpected: {s['unexpected_errors']})")
    if s["outcomes"]:
        lines.append("  outcomes: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(s["outcomes"].items())))
    if s["missing_replies"] or s["missing_new"] or s["unmatched_public_trades"]:
        lines.append(f"  MISSING: replies {s['missing_replies']:,}, new reports "
                     f"{s['missing_new']:,}, public trades {s['unmatched_public_trades']:,}")
    lag = s["send_lag_us"]
    lines.append(f"  load generator: CPU {s['generator_cpu']:.0%} of one core; send lag "
                 f"p50 {lag['p50']:,.0f} µs, p99 {lag['p99']:,.0f} µs, max {lag['max']:,.0f} µs"
                 + ("" if s["precise_timer"] else " (no timerfd: 1 ms timer resolution)"))
    if s["load_average"] is not None:
        lines.append(f"  machine: {s['cpus']} CPUs, 1-minute load average {s['load_average']:.1f} "
                     "before the run (anything else running skews the numbers)")
    if s["exchange_cpu"]:
        lines.append("  exchange CPU (fraction of one core): " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["exchange_cpu"].items()))
    return "\n".join(lines)


def render_sweep(steps: list[dict[str, Any]]) -> str:
    lines = ["sweep (request -> new, µs):",
             f"  {'offered':>9} {'achieved':>9} {'p50':>10} {'p99':>10} {'p99.9':>10} "
             f"{'max':>10} {'gen CPU':>8}"]
    for s in steps:
        lines.append(f"  {s['rate']:>9,.0f} {s['achieved_rate']:>9,.0f} {s['p50_us']:>10,.0f} "
                     f"{s['p99_us']:>10,.0f} {s['p999_us']:>10,.0f} {s['max_us']:>10,.0f} "
                     f"{s['generator_cpu']:>8.0%}" + ("  aborted" if s["aborted"] else ""))
    return "\n".join(lines)


def saturated(s: dict[str, Any]) -> bool:
    """The knee: achieved below 90% of offered, p99 over 1 s, or the run failed."""
    return bool(s["aborted"] or s["achieved_rate"] < KNEE_ACHIEVED * s["rate"]
                or s["p99_us"] * 1000 > KNEE_P99_NS)

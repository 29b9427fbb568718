"""``--plot``: a PNG of the latency spectrum (with its floor) and of the sweep, by matplotlib.

matplotlib comes with the ``bench`` extra and is imported only here, when a
plot is asked for, after the runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from benchmarks.e2e.report import METRICS, RunResult


def write_plot(path: str, results: list[RunResult], steps: list[dict[str, Any]]) -> None:
    """PNG: percentile spectrum of the (last) run with its floor, and the sweep if any."""
    matplotlib: Any = importlib.import_module("matplotlib")  # optional: the bench extra
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    last = results[-1]
    ncols = 2 if len(steps) > 1 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 5), squeeze=False)
    ax = axes[0][0]
    for name, label in METRICS:
        points = last.hists[name].spectrum()
        if points:
            xs = [1.0 / (1.0 - p / 100.0) if p < 100 else None for p, _ in points]
            pairs = [(x, v / 1000) for x, (_, v) in zip(xs, points, strict=True) if x]
            ax.plot([x for x, _ in pairs], [v for _, v in pairs], label=label)
    if "ws" in last.floor:
        ws, rd = last.floor["ws"], last.floor.get("redis")
        pts = ws.spectrum()
        ys = [(v + (2 * rd.value_at_percentile(p) if rd else 0)) / 1000 for p, v in pts]
        xs2 = [1.0 / (1.0 - p / 100.0) if p < 100 else 0.0 for p, _ in pts]
        ax.plot([x for x in xs2 if x], [y for x, y in zip(xs2, ys, strict=True) if x],
                "k--", label="floor (ws + 2 x redis)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(f"latency spectrum at {last.rate:,.0f} orders/s offered")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if ncols == 2:
        ax2 = axes[0][1]
        done = [s for s in steps if not s["aborted"]]  # an aborted step has no latencies
        xs = [s["achieved_rate"] for s in done]
        for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"),
                           ("max_us", "max")):
            ax2.plot(xs, [s[key] for s in done], marker="o", label=label)
        ax2.set_yscale("log")
        ax2.set_xlabel("achieved orders/s")
        ax2.set_ylabel("request -> new latency (µs)")
        ax2.set_title("latency vs throughput (sweep)")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

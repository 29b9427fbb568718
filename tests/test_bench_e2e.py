"""``streamex bench e2e``: its histogram, its plan, and a short run against a real exchange."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time

import pytest

from benchmarks.e2e.launch import bench_markets
from benchmarks.e2e.schedule import AMEND, CANCEL, EXPECTED_ERRORS, MARKETABLE, PASSIVE, build_plan
from benchmarks.histogram import Histogram, bucket_bounds, bucket_index


def test_histogram_percentiles_within_resolution() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(12, 1.5)) for _ in range(20_000)] + [0, 1, 2047, 2048]
    h = Histogram()
    h.record_all(values)
    exact = sorted(values)
    for p in (0.0, 50.0, 90.0, 99.0, 99.9, 99.99):
        want = exact[max(1, math.ceil(p / 100 * len(exact))) - 1]
        got = h.value_at_percentile(p)
        assert want <= got <= want + want / 1024 + 1, (p, want, got)
    assert h.value_at_percentile(100) == h.max == exact[-1]
    assert h.min == exact[0] and h.total == len(values)
    assert h.percentiles([99.0, 50.0, 100.0]) == [h.value_at_percentile(p) for p in (99, 50, 100)]


def test_histogram_buckets_cover_every_value_once() -> None:
    previous_high = -1
    for index in range(bucket_index(10**12)):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1 and bucket_index(low) == bucket_index(high) == index
        previous_high = high


def test_histogram_merge_and_spectrum() -> None:
    a, b = Histogram(), Histogram()
    a.record_all(range(1000))
    b.record_all(range(1000, 5000))
    a.merge(b)
    assert a.total == 5000 and a.min == 0 and a.max == 4999
    spectrum = a.spectrum()
    assert spectrum[-1] == (100.0, 4999)
    assert [v for _, v in spectrum] == sorted(v for _, v in spectrum)


def test_plan_frames_are_valid_requests() -> None:
    plan = build_plan(bench_markets(2), 4000, connections=4, accounts=2, seed=3)
    assert len(plan) == 4000 and set(plan.kind) == {PASSIVE, MARKETABLE, CANCEL, AMEND}
    for i in range(len(plan)):
        request = json.loads(plan.frames[i])
        assert request["id"] == i
        params = request["params"]
        assert params["symbol"] == plan.symbols[i % 2]
        if plan.kind[i] in (PASSIVE, MARKETABLE):
            assert request["method"] == "order.place"
            assert params["client_order_id"] == f"{plan.tag}{i}" and params["stp"] == "none"
            assert (params["type"] == "limit" and "tif" not in params) == (plan.kind[i] == PASSIVE)
            continue
        target = plan.target[i]
        # A cancel or amend goes on the connection of the order it names, placed before it.
        assert 0 <= target < i and plan.conn[i] == plan.conn[target]
        assert params["client_order_id"] == f"{plan.tag}{target}"
        parts = plan.by_id[i]
        assert parts is not None
        by_id = json.loads(parts[0] + b"1700000000000-7" + parts[1])
        assert by_id["params"].pop("order_id") == "1700000000000-7"
        assert by_id == {**request, "params": {k: v for k, v in params.items()
                                                if k != "client_order_id"}}
    # Connections alternate between the two accounts; every connection is used.
    assert sorted(set(plan.conn)) == [0, 1, 2, 3]


def test_short_run_against_a_started_exchange() -> None:
    """~2 s at 150 requests/s against ``streamex up`` started by the benchmark itself."""
    rate, duration = 150, 2.0
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamex", "bench", "e2e", "--rate", str(rate),
         "--duration", str(duration), "--warmup", "0.5", "--connections", "2",
         "--markets", "2", "--floor-samples", "300", "--json"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["aborted"] is None
    assert result["rate"] == rate and result["markets"] == ["BTC-USD", "ETH-USD"]
    assert result["sent"] == int(rate * (duration + 0.5))
    assert result["replies"] == result["sent"] and result["missing_replies"] == 0
    assert result["places_received"] == sum(
        result["commands"][k] for k in ("passive", "marketable"))
    assert result["missing_new"] == 0
    assert result["unexpected_errors"] == 0
    assert set(result["errors"]) <= set().union(*EXPECTED_ERRORS.values())
    assert 0.9 * rate <= result["achieved_rate"] <= 1.05 * rate
    for name, metric in result["metrics"].items():
        if name != "public_trade" or metric["count"]:
            assert metric["count"] > 0, name
            assert 0 < metric["p50"] <= metric["p99"] <= metric["max"], (name, metric)
    # Every measured order got its `new` (or `rejected`) report, and its `received` reply.
    assert result["metrics"]["new"]["count"] == result["measured_places"] > 0
    received = result["metrics"]["received"]["count"]
    assert received <= rate * duration <= received + sum(result["errors"].values())
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"] <= result["max_us"]
    assert result["floor_us"] > 0 and result["floor"]["ws"]["p50"] > 0
    assert result["floor"]["redis"]["p50"] > 0
    assert result["p50_ratio"] == pytest.approx(result["p50_us"] / result["floor_us"], rel=0.01)
    assert result["unmatched_public_trades"] == 0
    assert 0 < result["generator_cpu"] < 1.0
    assert {"gateway", "marketdata", "engine BTC-USD", "engine ETH-USD"} <= set(
        result["exchange_cpu"])

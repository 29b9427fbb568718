"""``benchmarks.peers_bench``: every installed pure-Python peer trades exactly as streamex.

Nothing here is timed: the tests replay small seeded and random flows through
every engine and compare the normalised fills and final books, and run the CLI
once with ``--json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.flow import entry_ids
from benchmarks.peer_flow import CANCEL, MODIFY, PLACE, FlowBuilder, Op, peer_flow
from benchmarks.peers_bench import (
    STREAMEX,
    Engine,
    book_streamex,
    check,
    fills_streamex,
    load_peers,
)

ROOT = Path(__file__).resolve().parent.parent
PEERS, SKIPPED = load_peers(["lightmatchingengine", "pyorderbook"])
PEER_IDS = [p.name for p in PEERS]


def test_the_python3_peers_are_installed() -> None:
    # Both are in the dev extra; a missing one would make the tests below vacuous.
    assert PEER_IDS == ["lightmatchingengine", "pyorderbook"], SKIPPED


def test_dyn4mik3_orderbook_is_reported_not_fatal() -> None:
    engines, skipped = load_peers(["orderbook"])
    assert engines == []
    assert "orderbook" in skipped


def _same_as_streamex(peer: Engine, ops: list[Op]) -> None:
    ref = STREAMEX.replay(ops)
    fills, book = fills_streamex(ops, ref), book_streamex(ref)
    assert check(peer, ops, peer.replay(ops), fills, book) is None


@pytest.mark.parametrize("peer", PEERS, ids=PEER_IDS)
def test_a_seeded_flow_trades_the_same_in_every_peer(peer: Engine) -> None:
    flow = peer_flow(3000, seed=7)
    kinds = {op[0] for op in flow.ops}
    assert kinds == {PLACE, CANCEL, MODIFY}
    ref = STREAMEX.replay(flow.ops)
    fills = fills_streamex(flow.ops, ref)
    assert len(fills) > 50  # the flow trades: the comparison is not of two empty lists
    assert check(peer, flow.ops, peer.replay(flow.ops), fills, book_streamex(ref)) is None


@pytest.mark.parametrize("peer", PEERS, ids=PEER_IDS)
def test_a_different_trade_is_caught(peer: Engine) -> None:
    flow = peer_flow(2000, seed=3)
    ref = STREAMEX.replay(flow.ops)
    fills = fills_streamex(flow.ops, ref)
    taker, maker, price, qty = fills[0]
    wrong = [(taker, maker, price + 1, qty), *fills[1:]]
    problem = check(peer, flow.ops, peer.replay(flow.ops), wrong, book_streamex(ref))
    assert problem is not None and "fills differ" in problem


def test_market_and_ioc_orders_leave_nothing_resting() -> None:
    flow = peer_flow(3000, seed=2)
    # A market buy's emulation is a limit at the price bound; its cancel follows it.
    for i, op in enumerate(flow.ops):
        if op[0] == PLACE and op[4] in (flow.market.max_ticks, flow.market.min_ticks):
            assert op[1] not in flow.book.orders
            if i + 1 < len(flow.ops) and flow.ops[i + 1][2] == op[1]:
                assert flow.ops[i + 1][0] == CANCEL


_action = st.tuples(
    st.sampled_from((PLACE, PLACE, CANCEL, MODIFY)),
    st.sampled_from(("buy", "sell")),
    st.integers(0, 6),  # price offset from 100 ticks: a narrow band, so orders cross
    st.integers(1, 5),  # qty
    st.integers(0, 1000),  # which open order a cancel or modify targets
)


def _ops(actions: list[tuple[int, str, int, int, int]]) -> list[Op]:
    b = FlowBuilder()
    for eid, (kind, side, offset, qty, pick) in zip(entry_ids(len(actions)), actions,
                                                     strict=True):
        if kind == PLACE or not b.book.orders:
            b.place(eid, side, 100 + offset, qty)
            continue
        open_ids = sorted(b.book.orders)
        target = open_ids[pick % len(open_ids)]
        if kind == CANCEL:
            assert b.cancel(eid, target)
        else:
            assert b.modify(eid, target, qty, None if pick % 2 else 100 + offset)
    return b.ops


@pytest.mark.parametrize("peer", PEERS, ids=PEER_IDS)
@settings(max_examples=150, deadline=None)
@given(actions=st.lists(_action, max_size=80))
def test_random_flows_trade_the_same_in_every_peer(
        peer: Engine, actions: list[tuple[int, str, int, int, int]]) -> None:
    _same_as_streamex(peer, _ops(actions))


def test_the_cli_prints_sane_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamex", "bench", "peers", "--messages", "3000", "--runs",
         "2", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["same_trades"] is True
    assert result["runs"] == 2 and result["source_messages"] == 3000
    assert result["messages"] >= 3000 and result["fills"] > 0
    assert set(result["engines"]) == {"streamex", *PEER_IDS}
    for r in result["engines"].values():
        assert r["msgs_per_s"] > 0 and r["median_msgs_per_s"] <= r["msgs_per_s"]
        assert r["fills"] == result["fills"]
    assert result["fastest_peer"] in PEER_IDS
    engines = result["engines"]
    fastest = engines[result["fastest_peer"]]
    assert fastest["median_msgs_per_s"] == max(engines[p]["median_msgs_per_s"] for p in PEER_IDS)
    assert result["ratio_best"] == round(engines["streamex"]["msgs_per_s"]
                                         / fastest["msgs_per_s"], 2)
    assert result["cpu_ratio_median"] == round(engines["streamex"]["median_cpu_msgs_per_s"]
                                               / fastest["median_cpu_msgs_per_s"], 2)
    assert "orderbook" in result["skipped"]
    assert len(result["loadavg_before"]) == 3 and len(result["loadavg_after"]) == 3
    assert "load average" in done.stdout

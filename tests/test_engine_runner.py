"""The engine service against a real Redis server and real engine processes."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from engine_helpers import (
    EngineProcess,
    applied_id,
    assert_contiguous,
    assert_same_events,
    command_entries,
    msgpack,
    out_entries,
    out_events,
    reference_run,
    same_book,
    stored_snapshot,
    write_config,
    xadd_commands,
)
from hiredis import pack_command
from hypothesis import given, settings
from hypothesis import strategies as st
from timing import wait_until

from benchmarks.flow import realistic_flow
from contract import keys
from contract.commands import Place, encode_command
from contract.events import InputRejected
from contract.ids import parse_id
from contract.market import DEFAULT_MARKETS
from contract.settings import EngineConfig
from contract.streams import IN_FIELD, RawEntry
from engine.channel import resp_command
from engine.recovery import replay
from engine.runner import EXIT_OK, EngineRunner
from engine.stage import MarketCore
from engine.topology import Topology
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import take_snapshot
from streamex.redis_server import RedisServer

BTC, ETH = DEFAULT_MARKETS
IN = keys.in_stream(BTC.symbol)
GROUP = keys.ENGINE_GROUP


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture
def engines(tmp_path: Path, redis_url: str) -> Iterator[list[EngineProcess]]:
    """Engine processes started by the test; killed at teardown if still running."""
    started: list[EngineProcess] = []
    yield started
    for proc in started:
        proc.cleanup()


def start_engine(engines: list[EngineProcess], url: str, config: Path, consumer: str,
                 tmp_path: Path, markets: list[str] | None = None) -> EngineProcess:
    proc = EngineProcess(url, config, consumer, tmp_path / f"{consumer}.log", markets).start()
    engines.append(proc)
    return proc


def pending_count(client: redis.Redis, key: str = IN) -> int:
    return int(client.xpending(key, GROUP)["pending"])


def test_engine_applies_a_flow_exactly_like_the_book_and_stops_cleanly(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, batch_size=256, snapshot_every=1_000_000)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    pairs = realistic_flow(BTC, 3000, seed=11)
    xadd_commands(client, BTC.symbol, pairs)
    last = pairs[-1][0].encode()
    wait_until(lambda: applied_id(client, BTC.symbol) == last, what="all applied")

    expected, book = reference_run(BTC, command_entries(pairs))
    entries = out_entries(client, BTC.symbol)
    assert all(in_id for _, in_id, _ in entries)
    assert entries[-1][1] == last  # each :out entry names the last input it answers
    actual = [e for _, _, events in entries for e in events]
    assert_contiguous(actual)
    assert_same_events(actual, expected)
    assert pending_count(client) == 0
    assert client.get(keys.lease_key(BTC.symbol)) == b"e1"
    assert client.get(keys.epoch_key(BTC.symbol)) == b"1"

    assert engine.stop() == EXIT_OK
    snap = stored_snapshot(client, BTC.symbol)
    assert snap is not None and snap.last_input_id == last.decode()
    assert snap.last_out_id == entries[-1][0].decode()
    assert same_book(snap, book)
    assert client.get(keys.lease_key(BTC.symbol)) is None  # released for a standby
    log = engine.log()
    assert "event=stopped market=BTC-USD" in log and "event=stats" in log


def test_undecodable_entries_are_rejected_acknowledged_and_skipped(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    good = Place("alice", "buy", "limit", 10, 100)
    poison: list[dict[bytes, bytes]] = [
        {IN_FIELD: b"\xc1\xff garbage"},                       # not msgpack
        {b"x": encode_command(good)},                        # command field missing
        {IN_FIELD: msgpack({"kind": "place", "qty": 1})},    # msgpack, wrong shape
        {IN_FIELD: msgpack(["place", "bob", "up", "limit", 1, 1])},  # bad enum value
        {IN_FIELD: msgpack(["explode", 1])},                  # unknown command
    ]
    ids = [client.xadd(IN, fields).decode() for fields in poison]
    ids.append(client.xadd(IN, {IN_FIELD: encode_command(good)}).decode())
    wait_until(lambda: applied_id(client, BTC.symbol) == ids[-1].encode(), what="applied")

    events = out_events(client, BTC.symbol)
    assert_contiguous(events)
    rejected = [e for e in events if isinstance(e, InputRejected)]
    assert [e.input_id for e in rejected] == ids[:5]
    assert {e.reason for e in rejected} == {"BAD_REQUEST"}
    expected, _ = reference_run(
        BTC, [(i, f) for i, f in zip(ids, [*poison, {IN_FIELD: encode_command(good)}],
                                       strict=True)])
    assert_same_events(events, expected)
    assert pending_count(client) == 0
    assert engine.running()
    assert engine.stop() == EXIT_OK


def test_snapshots_trim_only_applied_entries_and_restart_recovers(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, batch_size=50, snapshot_every=200)
    pairs = realistic_flow(BTC, 2500, seed=5)
    first, later = pairs[:1500], pairs[1500:]
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    xadd_commands(client, BTC.symbol, first)
    wait_until(lambda: applied_id(client, BTC.symbol) == first[-1][0].encode())
    engine.kill()  # no final snapshot: recovery must replay after the last periodic one

    snap = stored_snapshot(client, BTC.symbol)
    assert snap is not None
    ids = [i for i, _ in client.xrange(IN)]
    assert len(ids) < len(first), "snapshots trimmed nothing"
    # Everything after the snapshot is still there (MINID keeps the snapshot's own entry).
    assert ids[0].decode() == snap.last_input_id
    covered = parse_id(snap.last_input_id)
    assert ids == [i.encode() for i, _ in first if parse_id(i) >= covered]

    xadd_commands(client, BTC.symbol, later)  # unapplied while no engine runs
    assert client.xlen(IN) == len(ids) + len(later)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    wait_until(lambda: applied_id(client, BTC.symbol) == later[-1][0].encode())
    assert engine.stop() == EXIT_OK

    expected, book = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, BTC.symbol)
    assert_contiguous(actual)
    assert_same_events(actual, expected)
    final = stored_snapshot(client, BTC.symbol)
    assert final is not None and same_book(final, book)
    assert "replayed=" in engine.log()


def test_one_process_serves_several_markets_each_in_stream_order(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, batch_size=100, snapshot_every=700)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path)  # every configured market
    flows = {BTC.symbol: realistic_flow(BTC, 2000, seed=1),
             ETH.symbol: realistic_flow(ETH, 1500, seed=2)}
    threads = [threading.Thread(target=xadd_commands, args=(client, sym, pairs, 100))
               for sym, pairs in flows.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sym, pairs in flows.items():
        last = pairs[-1][0].encode()
        wait_until(lambda s=sym, x=last: applied_id(client, s) == x, what=f"{sym} applied")
    assert engine.stop() == EXIT_OK
    for market in (BTC, ETH):
        expected, book = reference_run(market, command_entries(flows[market.symbol]))
        actual = out_events(client, market.symbol)
        assert_contiguous(actual)
        assert_same_events(actual, expected)
        snap = stored_snapshot(client, market.symbol)
        assert snap is not None and same_book(snap, book)


def test_a_busy_market_does_not_starve_a_quiet_one(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, batch_size=100)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path)
    wait_until(lambda: client.get(keys.lease_key(ETH.symbol)) == b"e1")
    btc = realistic_flow(BTC, 30_000, seed=6)
    engine.signal(signal.SIGSTOP)
    xadd_commands(client, BTC.symbol, btc, chunk=5000)
    engine.signal(signal.SIGCONT)
    wait_until(lambda: applied_id(client, BTC.symbol) != b"0-0", poll_s=0.0005)
    eth_id = client.xadd(keys.in_stream(ETH.symbol),
                         {IN_FIELD: encode_command(Place("bob", "sell", "limit", 5, 300_000))})
    wait_until(lambda: applied_id(client, ETH.symbol) == eth_id, poll_s=0.0005)
    assert parse_id(applied_id(client, BTC.symbol)) < parse_id(btc[-1][0]), \
        "the ETH order waited for the whole BTC backlog"
    wait_until(lambda: applied_id(client, BTC.symbol) == btc[-1][0].encode())
    assert engine.stop() == EXIT_OK
    expected, _ = reference_run(BTC, command_entries(btc))
    assert_same_events(out_events(client, BTC.symbol), expected)


def test_flushed_scripts_are_reloaded_and_nothing_is_lost(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, batch_size=64)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    pairs = realistic_flow(BTC, 1200, seed=17)
    xadd_commands(client, BTC.symbol, pairs[:600])
    wait_until(lambda: applied_id(client, BTC.symbol) == pairs[599][0].encode())
    client.script_flush()
    xadd_commands(client, BTC.symbol, pairs[600:])
    wait_until(lambda: applied_id(client, BTC.symbol) == pairs[-1][0].encode())
    assert engine.stop() == EXIT_OK
    assert "event=state_changed" in engine.log()  # NOSCRIPT -> reload + recover
    expected, _ = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, BTC.symbol)
    assert_contiguous(actual)
    assert_same_events(actual, expected)


def test_sigterm_writes_a_snapshot_and_exits_zero(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    config = write_config(tmp_path, snapshot_every=1_000_000, snapshot_interval_s=3600.0)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    pairs = realistic_flow(BTC, 500, seed=3)
    xadd_commands(client, BTC.symbol, pairs)
    wait_until(lambda: applied_id(client, BTC.symbol) == pairs[-1][0].encode())
    assert stored_snapshot(client, BTC.symbol) is None  # none due yet
    assert engine.stop() == EXIT_OK
    snap = stored_snapshot(client, BTC.symbol)
    assert snap is not None and snap.last_input_id == pairs[-1][0]
    _, book = reference_run(BTC, command_entries(pairs))
    assert same_book(snap, book)


def test_pending_entries_of_a_dead_consumer_are_applied_in_id_order(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    """Claimed entries come before newer ones; ids at or below applied are never reapplied."""
    pairs = realistic_flow(BTC, 600, seed=9)
    client.xgroup_create(IN, GROUP, id="0", mkstream=True)
    xadd_commands(client, BTC.symbol, pairs[:400])
    # A dead engine had applied the first 100 (recorded, but left them pending) and
    # taken delivery of 300 more without applying them; one of those was deleted since.
    client.xreadgroup(GROUP, "dead", {IN: ">"}, count=400)
    client.set(keys.applied_key(BTC.symbol), pairs[99][0])
    deleted = pairs[250][0]
    client.xdel(IN, deleted)
    xadd_commands(client, BTC.symbol, pairs[400:])

    config = write_config(tmp_path, batch_size=64)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    wait_until(lambda: applied_id(client, BTC.symbol) == pairs[-1][0].encode())
    assert engine.stop() == EXIT_OK

    kept = [p for p in pairs if p[0] != deleted]
    expected, _ = reference_run(BTC, command_entries(kept))
    # The first 100 were "already published" by the dead engine: only the rest appear.
    book_events_before, _ = reference_run(BTC, command_entries(kept[:100]))
    actual = out_events(client, BTC.symbol)
    assert_contiguous(actual, first=len(book_events_before) + 1)
    assert_same_events(actual, expected[len(book_events_before):])
    assert pending_count(client) == 0
    # 299 still to apply; 100 at or below applied and the deleted one acknowledged only.
    assert "claimed=299 acked_without_apply=101" in engine.log()


def test_engine_recreates_its_group_after_redis_restarts_without_data(
        tmp_path: Path, engines: list[EngineProcess]) -> None:
    server = RedisServer(data_dir=tmp_path / "redis")  # no AOF: a restart loses everything
    server.start()
    try:
        with redis.Redis.from_url(server.url) as c:
            config = write_config(tmp_path, lease_ms=1000)
            engine = start_engine(engines, server.url, config, "e1", tmp_path, [BTC.symbol])
            pairs = realistic_flow(BTC, 400, seed=4)
            xadd_commands(c, BTC.symbol, pairs[:200])
            wait_until(lambda: applied_id(c, BTC.symbol) == pairs[199][0].encode())
            server.restart()
            assert c.xlen(IN) == 0  # nothing survived (the engine may have recreated it)
            # Orders sent after the restart start a new history (nothing survived).
            xadd_commands(c, BTC.symbol, pairs[200:])
            wait_until(lambda: applied_id(c, BTC.symbol) == pairs[-1][0].encode(),
                       what="applied after restart")
            expected, _ = reference_run(BTC, command_entries(pairs[200:]))
            assert_same_events(out_events(c, BTC.symbol), expected)
            assert engine.stop() == EXIT_OK
            assert "event=redis_unavailable" in engine.log()
    finally:
        server.stop()


def test_in_process_runner_and_replay_agree(redis_url: str, client: redis.Redis) -> None:
    """The runner's library API (used by the benchmark) gives the same output as the book."""
    pairs = realistic_flow(BTC, 2000, seed=21)
    xadd_commands(client, BTC.symbol, pairs)
    settings = EngineConfig(batch_size=128, snapshot_every=1_000_000)
    runner = EngineRunner(redis_url, [BTC], settings, "inproc", record_latencies=True)
    assert runner.run(until_applied={BTC.symbol: pairs[-1][0].encode()}) == EXIT_OK
    expected, book = reference_run(BTC, command_entries(pairs))
    assert_same_events(out_events(client, BTC.symbol), expected)
    assert runner.stats(BTC.symbol).applied == len(pairs)
    assert len(runner.stats(BTC.symbol).commit_latencies_s) == runner.stats(BTC.symbol).batches
    runner.book(BTC.symbol)._check()
    # A replay from scratch (what recovery does) reaches the same book.
    replayed = reference_run(BTC, [])[1]
    raw = [[i.encode(), [IN_FIELD, encode_command(c)]] for i, c in pairs]
    apply_entries(replayed, raw, [])
    snap = stored_snapshot(client, BTC.symbol)
    assert snap is not None and same_book(snap, replayed) and same_book(snap, book)


def test_a_lone_command_costs_one_read_and_one_commit(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    """At low rates the engine waits for the next command in the read pipelined with the
    last commit: one XREADGROUP and one EVALSHA per command, plus the periodic ones
    (BLOCK time-outs, lease renewals), never a separate read or poll per command."""
    block_ms, lease_ms = 200, 3000
    config = write_config(tmp_path, block_ms=block_ms, lease_ms=lease_ms)
    start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    wait_until(lambda: client.get(keys.lease_key(BTC.symbol)) == b"e1", what="lease")
    first = client.xadd(IN, {IN_FIELD: encode_command(Place("alice", "buy", "limit", 1, 90))})
    wait_until(lambda: applied_id(client, BTC.symbol) == first, what="warm-up")

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("xreadgroup", "evalsha")}

    before, started = calls(), time.monotonic()
    n = 40
    for i in range(n):
        added = client.xadd(IN, {IN_FIELD: encode_command(
            Place("bob", "sell", "limit", 1, 100 + i))})
        wait_until(lambda added=added: applied_id(client, BTC.symbol) == added,
                   what=f"command {i} applied", poll_s=0.002)
    after, elapsed = calls(), time.monotonic() - started
    periodic = int(elapsed / (block_ms / 1000)) + int(elapsed / (lease_ms / 3000)) + 2
    assert after["xreadgroup"] - before["xreadgroup"] <= n + periodic, (before, after, elapsed)
    assert after["evalsha"] - before["evalsha"] <= n + periodic, (before, after, elapsed)


@settings(max_examples=300, deadline=None)
@given(head=st.lists(st.one_of(st.binary(max_size=300), st.integers(-10**12, 10**12),
                               st.text(max_size=40)), min_size=1, max_size=12),
       tail=st.lists(st.binary(max_size=20), max_size=60))
def test_commits_are_packed_exactly_as_hiredis_packs_them(
        head: list[bytes | int | str], tail: list[bytes]) -> None:
    """The commit's RESP is written by hand for speed; Redis must get the same bytes."""
    assert resp_command(head, tail) == pack_command(tuple(head) + tuple(tail))


def test_a_quiet_market_expires_gtd_orders_on_time_with_its_own_clock_entries(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    """Two GTD orders due in about a second, and nothing else arrives: the engine appends
    one clock entry per due time (its id the due time) and the orders expire then, not
    earlier; a kill -9 and restart replays those entries to the same events and adds
    none for times already passed."""
    from contract.commands import Clock, decode_command
    from contract.events import Report

    config = write_config(tmp_path, batch_size=64, snapshot_every=1_000_000)
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    now = int(time.time() * 1000)
    first, second = now + scaled_ms(800), now + scaled_ms(1500)
    resting = [(f"{now}-1", Place("alice", "buy", "limit", 10, 2_000_000, tif="GTD",
                                  expire_time=first)),
               (f"{now}-2", Place("bob", "sell", "limit", 10, 3_000_000, tif="GTD",
                                  expire_time=second)),
               (f"{now}-3", Place("carol", "sell", "limit", 10, 3_100_000))]
    xadd_commands(client, BTC.symbol, resting)

    def expired() -> list[Report]:
        return [e for e in out_events(client, BTC.symbol)
                if isinstance(e, Report) and e.exec_type == "expired"]

    wait_until(lambda: len(expired()) == 2, what="both GTD orders expired")
    got = expired()
    assert [(r.order_id, r.reason, r.ts) for r in got] == [
        (f"{now}-1", "EXPIRED", first), (f"{now}-2", "EXPIRED", second)]
    assert time.time() * 1000 >= second
    clocks = [(i, f) for i, f in client.xrange(IN)
              if isinstance(decode_command(f[IN_FIELD]), Clock)]
    assert [i for i, _ in clocks] == [f"{first}-0".encode(), f"{second}-0".encode()]
    before = out_events(client, BTC.symbol)

    engine.kill()
    engine = start_engine(engines, redis_url, config, "e1", tmp_path, [BTC.symbol])
    client.xadd(IN, {IN_FIELD: encode_command(Place("dave", "buy", "limit", 1, 1_000_000))})
    wait_until(lambda: len(out_events(client, BTC.symbol)) > len(before),
               what="the restarted engine serving")
    after = out_events(client, BTC.symbol)
    assert after[:len(before)] == before  # nothing expired twice, nothing re-reported
    assert len([i for i, f in client.xrange(IN)
                if isinstance(decode_command(f[IN_FIELD]), Clock)]) == 2


def scaled_ms(ms: int) -> int:
    from timing import scaled

    return int(scaled(ms))


def _clients(client: redis.Redis) -> int:
    return len(client.client_list())


@pytest.mark.parametrize(("chunk", "upto_index"), [(7, 48), (7, 49), (7, 3), (1000, 99)])
def test_replay_in_pipelined_chunks_applies_each_entry_once(
        client: redis.Redis, redis_url: str, chunk: int, upto_index: int) -> None:
    """Replay reads the next chunk while it applies one: it must still stop at ``upto``
    (a chunk that ends there exactly, or mid-chunk), call back between chunks, and leave
    no connection behind."""
    pairs = realistic_flow(BTC, 100, seed=23)
    xadd_commands(client, BTC.symbol, pairs)
    upto = pairs[upto_index][0].encode()
    _, expected = reference_run(BTC, command_entries(pairs[:upto_index + 1]))
    topology = Topology([redis_url])
    baseline = _clients(client)
    core = MarketCore(OrderBook(BTC))
    calls: list[int] = []
    count, last = replay(topology, core, keys.MarketKeys.of(BTC.symbol), b"0-0", upto,
                         on_chunk=lambda: calls.append(1), chunk=chunk)
    assert (count, last) == (upto_index + 1, upto)
    assert same_book(take_snapshot(expected), core.book)
    assert len(calls) == -(-count // chunk) - 1
    assert _clients(client) <= baseline, "the replay's reader connection stayed open"
    # From the middle on (a snapshot's position) gives the same book as one pass.
    core = MarketCore(OrderBook(BTC))
    apply_entries(core.book, [[i.encode(), [IN_FIELD, encode_command(c)]]
                              for i, c in pairs[:2]], [])
    count, last = replay(topology, core, keys.MarketKeys.of(BTC.symbol),
                         pairs[1][0].encode(), upto, chunk=chunk)
    assert (count, last) == (upto_index - 1, upto) and same_book(take_snapshot(expected),
                                                                  core.book)
    topology.close()


def test_a_replay_that_fails_midway_closes_its_reader(client: redis.Redis,
                                                      redis_url: str) -> None:
    pairs = realistic_flow(BTC, 60, seed=24)
    xadd_commands(client, BTC.symbol, pairs)

    class Failing(MarketCore):
        def replay(self, entries: list[RawEntry]) -> None:
            if self.book.seq:
                raise RuntimeError("core failed")
            super().replay(entries)

    topology = Topology([redis_url])
    baseline = _clients(client)
    with pytest.raises(RuntimeError, match="core failed"):
        replay(topology, Failing(OrderBook(BTC)), keys.MarketKeys.of(BTC.symbol), b"0-0",
               pairs[-1][0].encode(), chunk=10)
    assert _clients(client) <= baseline
    assert topology.call(IN, "PING") == b"PONG", "the control connection is still usable"
    topology.close()

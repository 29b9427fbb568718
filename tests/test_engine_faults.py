"""Fault tests: kill -9 of the engine, kill -9 of Redis (AOF), a paused (zombie) engine."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter
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
    out_events,
    placed_reports,
    reference_run,
    same_book,
    stored_snapshot,
    write_config,
    xadd_commands,
)
from redis.backoff import NoBackoff
from redis.retry import Retry
from timing import scaled, wait_until

from benchmarks.flow import realistic_flow
from contract import keys
from contract.commands import Command, Place
from contract.ids import parse_id
from contract.market import DEFAULT_MARKETS
from engine.runner import EXIT_FENCED, EXIT_OK
from streamex.redis_server import RedisServer

BTC = DEFAULT_MARKETS[0]
SYM = BTC.symbol
IN = keys.in_stream(SYM)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture
def engines() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for proc in started:
        proc.cleanup()


class Feeder(threading.Thread):
    """XADDs a flow in chunks at a steady pace, never past ``limit`` orders."""

    def __init__(self, client: redis.Redis, pairs: list[tuple[str, Command]], chunk: int,
                 pause_s: float, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.client, self.pairs, self.chunk, self.pause_s = client, pairs, chunk, pause_s
        self.limit = len(pairs) if limit is None else limit
        self.sent = 0
        self.error: BaseException | None = None
        self.deadline = time.monotonic() + 60

    def run(self) -> None:
        try:
            while self.sent < len(self.pairs) and time.monotonic() < self.deadline:
                if self.sent >= self.limit:
                    time.sleep(0.005)
                    continue
                end = min(self.sent + self.chunk, self.limit)
                xadd_commands(self.client, SYM, self.pairs[self.sent:end])
                self.sent = end
                time.sleep(self.pause_s)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_kill9_at_random_moments_leaves_output_identical(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    """20,000 orders (icebergs, stops and GTD orders among them); the engine is SIGKILLed
    11 times while consuming and restarted."""
    rng = random.Random(20240611)
    # GTD orders live past the test: an expiry due on an idle engine would append a clock
    # entry, and this feeder writes explicit (old) ids (GTD expiry: test_engine_runner).
    pairs = realistic_flow(BTC, 20_000, seed=42, order_types=0.15,
                           gtd_life_ms=(10**11, 10**11 + 10**6))
    ids = [parse_id(i) for i, _ in pairs]
    # Chunks of several batches: kills also land between a read and its commit.
    config = write_config(tmp_path, batch_size=48, snapshot_every=700, lease_ms=2000)
    phases = 12
    bounds = [len(pairs) * k // phases for k in range(phases + 1)]
    feeder = Feeder(client, pairs, chunk=500, pause_s=0.05, limit=0)
    feeder.start()
    kills_while_consuming = 0
    for k in range(phases):
        engine = EngineProcess(redis_url, config, "engine-1", tmp_path / "engine.log",
                               [SYM]).start()
        engines.append(engine)
        # Wait until it has taken the market (epoch k + 1) and recovered, then feed.
        wait_until(lambda k=k: client.get(keys.epoch_key(SYM)) == str(k + 1).encode(),
                   what=f"takeover {k + 1}")
        feeder.limit = bounds[k + 1]
        if k == phases - 1:
            break
        start, end = bounds[k], bounds[k + 1]
        target = ids[rng.randint(start + (end - start) // 10, start + (end - start) * 9 // 10)]
        wait_until(lambda t=target: parse_id(applied_id(client, SYM)) >= t,
                   what=f"progress in phase {k}", poll_s=0.0005)
        engine.kill()
        if parse_id(applied_id(client, SYM)) < ids[end - 1]:
            kills_while_consuming += 1
    feeder.join(30)
    assert feeder.error is None and feeder.sent == len(pairs)
    wait_until(lambda: applied_id(client, SYM) == pairs[-1][0].encode(), what="all applied")
    assert engine.stop() == EXIT_OK
    assert kills_while_consuming >= 10

    expected, book = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, SYM)
    assert_contiguous(actual)
    assert_same_events(actual, expected)
    snap = stored_snapshot(client, SYM)
    assert snap is not None and same_book(snap, book)
    assert client.xpending(IN, keys.ENGINE_GROUP)["pending"] == 0
    log = engine.log()
    assert log.count("event=recovered") == phases
    # Some kills landed between a batch's delivery and its commit: those were claimed.
    assert re.search(r"claimed=[1-9]", log), "no kill hit an uncommitted batch"
    assert client.xlen(IN) < len(pairs)  # snapshots trimmed the input as it went


def test_redis_kill9_with_aof_always_loses_no_acknowledged_order(
        tmp_path: Path, engines: list[EngineProcess]) -> None:
    server = RedisServer(data_dir=tmp_path / "redis", aof=True, appendfsync="always")
    server.start()
    try:
        _redis_crash_scenario(server, tmp_path, engines)
    finally:
        server.stop()


def _redis_crash_scenario(server: RedisServer, tmp_path: Path,
                          engines: list[EngineProcess]) -> None:
    pairs = realistic_flow(BTC, 3000, seed=77)
    config = write_config(tmp_path, batch_size=64, snapshot_every=400, lease_ms=1000)
    engine = EngineProcess(server.url, config, "engine-1", tmp_path / "engine.log",
                           [SYM]).start()
    engines.append(engine)
    client = redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0),
                                  socket_timeout=2.0)
    acked: list[str] = []
    unknown: list[str] = []
    done = threading.Event()

    def feed() -> None:
        """Pipelines of 10 XADDs (one fsync each); an order counts once its reply is OK."""
        deadline = time.monotonic() + 60
        for i in range(0, len(pairs), 10):
            if time.monotonic() > deadline:
                break
            group = pairs[i:i + 10]
            pipe = client.pipeline(transaction=False)
            for entry_id, fields in command_entries(group):
                pipe.xadd(IN, fields, id=entry_id)
            try:
                replies = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError):
                unknown.extend(entry_id for entry_id, _ in group)  # may or may not be stored
                time.sleep(0.01)
                continue
            for (entry_id, _), reply in zip(group, replies, strict=True):
                (unknown if isinstance(reply, Exception) else acked).append(entry_id)
            time.sleep(0.002)
        done.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    wait_until(lambda: len(acked) >= 1000, what="first orders acknowledged")
    wait_until(lambda: parse_id(applied_id(client, SYM)) >= parse_id(acked[500]),
               what="engine consuming")
    server.kill()
    # Redis stays down until the engine has seen it go (then comes back from its AOF).
    wait_until(lambda: "event=redis_unavailable" in engine.log(), what="the engine sees Redis gone")
    server.restart()
    feeder.join(60)
    assert done.is_set()
    assert len(acked) > 2000 and unknown, "the crash happened mid-flow"
    last_stored = client.xrevrange(IN, count=1)[0][0]
    wait_until(lambda: applied_id(client, SYM) == last_stored, timeout_s=20,
               what="all stored orders applied")
    assert engine.running()
    assert engine.stop() == EXIT_OK
    assert "event=redis_unavailable" in engine.log()

    events = out_events(client, SYM)
    assert_contiguous(events)
    placed = placed_reports(events)
    counts = Counter(placed)
    assert not [oid for oid, n in counts.items() if n > 1], "an order was applied twice"
    places = {entry_id for entry_id, cmd in pairs if isinstance(cmd, Place)}
    missing = [i for i in acked if i in places and counts[i] != 1]
    assert not missing, f"acknowledged orders not applied: {missing[:5]}"
    assert set(placed) <= set(acked) | set(unknown)
    client.close()


def test_zombie_engine_is_fenced_and_the_standby_takes_over(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    lease_s = 1.0
    config = write_config(tmp_path, batch_size=64, snapshot_every=500,
                          lease_ms=int(lease_s * 1000))
    pairs = realistic_flow(BTC, 6000, seed=8)
    active = EngineProcess(redis_url, config, "A", tmp_path / "A.log", [SYM]).start()
    engines.append(active)
    wait_until(lambda: client.get(keys.lease_key(SYM)) == b"A", what="A leads")
    standby = EngineProcess(redis_url, config, "B", tmp_path / "B.log", [SYM]).start()
    engines.append(standby)
    wait_until(lambda: "event=start" in standby.log(), what="B started")

    feeder = Feeder(client, pairs, chunk=50, pause_s=0.02)
    feeder.start()
    wait_until(lambda: parse_id(applied_id(client, SYM)) >= parse_id(pairs[1000][0]))
    assert client.get(keys.lease_key(SYM)) == b"A"
    active.signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    wait_until(lambda: client.get(keys.lease_key(SYM)) == b"B", timeout_s=scaled(5),
               what="B takes over")
    takeover_s = time.monotonic() - paused_at
    # Expiry (at most one lease after the last renewal) + one standby poll + scheduling slack.
    assert takeover_s <= lease_s + scaled(0.5)
    during = applied_id(client, SYM)
    wait_until(lambda: parse_id(applied_id(client, SYM)) > parse_id(during),
               what="B applies new orders")
    active.signal(signal.SIGCONT)
    assert active.wait(10) == EXIT_FENCED
    assert "event=fenced" in active.log()

    feeder.join(30)
    assert feeder.error is None and feeder.sent == len(pairs)
    wait_until(lambda: applied_id(client, SYM) == pairs[-1][0].encode(), what="all applied")
    assert standby.stop() == EXIT_OK
    expected, book = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, SYM)
    assert_contiguous(actual)
    assert_same_events(actual, expected)
    snap = stored_snapshot(client, SYM)
    assert snap is not None and same_book(snap, book)


def test_standby_takes_over_within_the_lease_when_the_active_engine_dies(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    lease_s = 0.8
    config = write_config(tmp_path, lease_ms=int(lease_s * 1000), snapshot_every=300)
    pairs = realistic_flow(BTC, 2000, seed=3)
    active = EngineProcess(redis_url, config, "A", tmp_path / "A.log", [SYM]).start()
    engines.append(active)
    wait_until(lambda: client.get(keys.lease_key(SYM)) == b"A", what="A leads")
    standby = EngineProcess(redis_url, config, "B", tmp_path / "B.log", [SYM]).start()
    engines.append(standby)
    xadd_commands(client, SYM, pairs[:1000])
    wait_until(lambda: applied_id(client, SYM) == pairs[999][0].encode())
    assert client.get(keys.lease_key(SYM)) == b"A"
    active.kill()
    died_at = time.monotonic()
    wait_until(lambda: client.get(keys.lease_key(SYM)) == b"B", timeout_s=scaled(5))
    # Expiry (at most one lease after the last renewal) + one standby poll + scheduling slack.
    assert time.monotonic() - died_at <= lease_s + scaled(0.5)
    xadd_commands(client, SYM, pairs[1000:])
    wait_until(lambda: applied_id(client, SYM) == pairs[-1][0].encode())
    assert standby.stop() == EXIT_OK
    expected, _ = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, SYM)
    assert_contiguous(actual)
    assert_same_events(actual, expected)


def test_entries_taken_by_a_zombie_read_are_claimed_back_in_order(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        engines: list[EngineProcess]) -> None:
    """A foreign XREADGROUP (a paused engine's late read) makes the owner's commit refuse
    and recover; the stolen entries are applied in id order, nothing is skipped."""
    config = write_config(tmp_path, batch_size=50, lease_ms=10_000)
    pairs = realistic_flow(BTC, 800, seed=13)
    engine = EngineProcess(redis_url, config, "owner", tmp_path / "owner.log", [SYM]).start()
    engines.append(engine)
    xadd_commands(client, SYM, pairs[:300])
    wait_until(lambda: applied_id(client, SYM) == pairs[299][0].encode())
    engine.signal(signal.SIGSTOP)
    xadd_commands(client, SYM, pairs[300:])
    stolen = client.xreadgroup(keys.ENGINE_GROUP, "zombie", {IN: ">"}, count=100)
    assert stolen and stolen[0][1], "the zombie read nothing"
    engine.signal(signal.SIGCONT)
    wait_until(lambda: applied_id(client, SYM) == pairs[-1][0].encode())
    assert engine.stop() == EXIT_OK
    assert "STOLEN zombie" in engine.log()
    expected, _ = reference_run(BTC, command_entries(pairs))
    actual = out_events(client, SYM)
    assert_contiguous(actual)
    assert_same_events(actual, expected)
    assert client.xpending(IN, keys.ENGINE_GROUP)["pending"] == 0

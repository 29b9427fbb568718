"""The engine service: drive one core per stage (a market's book, a risk shard's ledger).

One thread, the synchronous redis client (hiredis parser), one loop that
round-robins the stages this process serves (``engine.stage``; "market"
below stands for either):

- a market whose lease another engine holds is a hot standby: the loop tries
  to take the lease every ``min(lease_ms / 10, 100 ms)`` and, once it has it,
  recovers the market (``engine.recovery``) and starts serving it;
- a market it owns is renewed every ``lease_ms / 3`` and served in rounds on
  a connection of its own to the node holding it (``engine.topology``):
  send the commit of the batch applied last round together with the read of
  more entries (``CommitChannel``, one round trip), apply the next batch
  while Redis works, then take the reply. Redis and Python thus run on two
  cores at once; a crash leaves at most two batches delivered but
  uncommitted, which recovery claims and applies again;
- a market with nothing in hand always has one ``XREADGROUP BLOCK`` in
  flight on its connection (sent with its last commit, so a lone command
  costs one round trip); the loop collects the replies that arrived, and
  when no market has work it waits on all those connections at once
  (``select``), so an idle market costs nothing and a busy one never delays
  another, on one server or on a cluster's several primaries;
- every ``snapshot_every`` commands or ``snapshot_interval_s`` seconds, at a
  round whose state is fully committed, a snapshot is written and the
  streams trimmed behind it;
- a market whose core has a clock-driven change due (a GTD order expiring:
  ``Core.next_due_ms``) and no entry at hand when it is due gets a ``Clock``
  entry appended to its input stream with the due time as its id
  (``XADD key <due>-*``), at most one per due time; the loop's waits end at
  the next due time, so this costs nothing until then and never polls. The
  entry goes through the stream like any other, so replay expires the same;
- a stage's side effects of a batch (the risk stage's forwards to the
  markets) go in the same write as its commit when they target the same
  node (the stage says so: ``Stage.before_commit``), else run once the
  commit's reply is in, before the next commit is sent; those of a
  recovery's replay run before the first new entry.

Failures: a Redis disconnect or timeout, or a cluster slot that moved (a
failover: ``TopologyChanged``), is retried with exponential backoff (50 ms
doubling to 2 s) on a fresh slot map, then every market is taken over again
and recovered. A stale epoch (another engine took over) stops the process with
:data:`EXIT_FENCED`. :meth:`EngineRunner.request_stop` (SIGTERM) commits the
batch already applied, writes a snapshot per owned market, releases the
leases and makes :meth:`EngineRunner.run` return 0.

Operations (``engine.metrics``, ``ops``): with :meth:`EngineRunner.instrument`
each commit observes its batch size and latency (two histogram observes
per batch, nothing per command); every other metric is read at scrape time
from plain attributes (:meth:`EngineRunner.stage_status`), and the lag from
Redis on the collector's own connection. Readiness
(:meth:`EngineRunner.redis_problem`, :meth:`EngineRunner.stages_problem`)
reads attributes the loop keeps up to date: whether the last round reached
Redis, and for each owned stage whether it is recovered and its last read
drained its stream (or the last entry it applied is recent). With a
:class:`~ops.registry.Registration` the loop refreshes it every
``ops.registry.REFRESH_S`` (one SET on the node of its key; a failure is
retried next time) and deletes it at a clean stop.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import redis
from redis.exceptions import RedisClusterException

import matching
from contract.commands import Clock, encode_command
from contract.ids import ZERO_ID, parse_id
from contract.keys import ENGINE_GROUP, service_key
from contract.market import Market
from contract.settings import EngineConfig
from contract.streams import IN_FIELD, RawEntry
from engine.channel import CommitChannel, StreamEntries
from engine.exceptions import CommitConflict, Fenced, RecoveryError, StateLost
from engine.lease import acquire, release, renew
from engine.metrics import EngineMetrics, StageStatus
from engine.recovery import recover
from engine.snapshots import write_snapshot
from engine.stage import Core, MarketCore, MarketStage, Stage
from engine.topology import Topology
from matching.book import OrderBook
from ops.registry import REFRESH_S, TTL_MS, Registration

log = logging.getLogger("streamex.engine")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_FENCED = 3

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 2.0
_HEALTHY_S = 10.0  # served this long since connecting: the next failure starts a new backoff
READY_LAG_S = 2.0
"""An owned stage whose last read did not drain its stream is still ready while the last
entry it applied is at most this old (a busy stage keeping up)."""
_STALL_S = 5.0  # no loop round for the block time plus this long: not ready


@dataclass
class MarketStats:
    """Counters of one market since the process started (latencies only if recorded).

    A commit latency is the time from sending a commit to reading its reply,
    which includes applying the overlapped batch meanwhile.
    """

    applied: int = 0
    batches: int = 0
    max_batch: int = 0
    snapshots: int = 0
    recoveries: int = 0
    replayed: int = 0
    clock_entries: int = 0
    commit_latencies_s: list[float] = field(default_factory=list)
    interval_latencies_s: list[float] = field(default_factory=list)
    interval_applied: int = 0
    interval_batches: int = 0


_CLOCK = encode_command(Clock())


class _Applied:
    """A batch applied to the core but not yet committed: ids, encoded events, effects."""

    __slots__ = ("ids", "events", "effects")

    def __init__(self, ids: list[bytes], events: bytes, effects: object | None) -> None:
        self.ids = ids
        self.events = events
        self.effects = effects


class _MarketState:
    """What the loop knows about one stage; ``epoch`` None means standby."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.symbol = stage.name
        self.keys = stage.keys
        self.stats = MarketStats()
        self.epoch: int | None = None
        self.core: Core = stage.empty()
        self.applied = ZERO_ID  # last committed input id
        self.last_out_id = ZERO_ID
        self.ready: _Applied | None = None  # applied, to commit next
        self.in_hand: list[RawEntry] = []  # delivered (or claimed), in id order, not applied
        self.since_snapshot = 0
        self.snapshot_at = 0.0
        self.next_lease = 0.0
        self.channel: CommitChannel | None = None  # the hot connection while owned
        self.clock_sent = 0  # the due time of the last clock entry appended
        self.drained = False  # the last read of the stream returned fewer than it asked
        self.read_asked = 0  # entries the held read asked for
        # Metrics observers (EngineRunner.instrument); None: metrics off, nothing observed.
        self.observe_batch: Callable[[float], None] | None = None
        self.observe_commit: Callable[[float], None] = _ignore

    def to_standby(self) -> None:
        """Forget ownership and state (rebuilt by recovery when the lease is taken again)."""
        self.epoch = None
        self.drained = False
        self.ready = None
        self.in_hand = []
        self.next_lease = 0.0
        if self.channel is not None:
            self.channel.close()
            self.channel = None


class EngineRunner:
    """Serve ``markets`` (or any ``stages``) from the Redis at ``redis_url`` as ``consumer``.

    ``redis_url`` is one URL, or several seed URLs of a cluster with
    ``cluster``. ``consumer`` names this engine in the lease and the
    consumer group; a restarted process that reuses the name takes its
    markets back at once, a different name waits for the lease to expire.
    Call :meth:`run`.
    """

    def __init__(self, redis_url: str | Sequence[str], markets: Sequence[Market | Stage],
                 settings: EngineConfig, consumer: str, stats_interval_s: float = 60.0,
                 record_latencies: bool = False, cluster: bool = False) -> None:
        if not markets:
            raise ValueError("markets: at least one market is needed")
        stages = [MarketStage(m) if isinstance(m, Market) else m for m in markets]
        self.seeds = (redis_url,) if isinstance(redis_url, str) else tuple(redis_url)
        self.cluster = cluster
        self.settings = settings
        self.consumer = consumer
        self.stats_interval_s = stats_interval_s
        self.record_latencies = record_latencies
        self._markets = [_MarketState(s) for s in stages]
        self._by_input_key = {m.keys.input.encode(): m for m in self._markets}
        self._topology: Topology | None = None
        self._stopping = False
        self._renew_every_s = settings.lease_ms / 3000
        self._poll_every_s = max(0.01, min(settings.lease_ms / 10_000, 0.1))
        self._block_s = min(settings.block_ms / 1000, self._renew_every_s)
        self._next_stats = 0.0
        self._targets: dict[str, tuple[int, int]] | None = None  # until_applied of run()
        self.registration: Registration | None = None
        """Refreshed from the loop while set (its ``owned`` updated); deleted at a clean
        stop."""
        self._next_register = 0.0
        self._reconnects = 0
        # Readiness, read by the checks from another thread (plain attributes only).
        self._redis_error: str | None = "not connected yet"
        self._round_at = 0.0

    # -- control ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Commit what is applied, snapshot, release the leases, return from :meth:`run`.

        Safe to call from a signal handler.
        """
        self._stopping = True

    def stage_names(self) -> list[str]:
        """The names of the stages this runner serves (owned or stood by for)."""
        return [m.symbol for m in self._markets]

    def stats(self, symbol: str) -> MarketStats:
        return next(m.stats for m in self._markets if m.symbol == symbol)

    def core(self, name: str) -> Core:
        """The in-memory core of stage ``name`` (for tests and benchmarks)."""
        return next(m.core for m in self._markets if m.symbol == name)

    def book(self, symbol: str) -> OrderBook:
        """The in-memory book of market ``symbol`` (for tests and benchmarks)."""
        core = self.core(symbol)
        assert isinstance(core, MarketCore), f"{symbol} is not a market"
        return core.book

    def epoch_of(self, name: str) -> int | None:
        """Stage ``name``'s fencing epoch while this engine holds its lease, else None.

        Safe to call from another thread (one attribute read)."""
        return next((m.epoch for m in self._markets if m.symbol == name), None)

    # -- operations: metrics, readiness --------------------------------------------------

    def instrument(self, metrics: EngineMetrics) -> None:
        """Observe every commit's batch size and latency on ``metrics`` and let its
        collector read :meth:`stage_status` at scrape time. Call once, before :meth:`run`."""
        for m in self._markets:
            m.observe_batch, m.observe_commit = metrics.observers(m.symbol)
        metrics.attach(self)

    @property
    def reconnects(self) -> int:
        """Times :meth:`run` reconnected to Redis after a failure."""
        return self._reconnects

    def stage_status(self) -> list[StageStatus]:
        """Every stage's counters and lease, from plain attributes: safe from another
        thread (a scrape). O(stages)."""
        now = time.monotonic()
        out = []
        for m in self._markets:
            epoch = m.epoch
            serving = epoch is not None and m.channel is not None  # recovered
            out.append(StageStatus(
                name=m.symbol, input_key=m.keys.input, applied=m.stats.applied,
                recoveries=m.stats.recoveries, clock_entries=m.stats.clock_entries, epoch=epoch,
                snapshot_age_s=now - m.snapshot_at if serving else None))
        return out

    def redis_problem(self) -> str | None:
        """Readiness: None when the last loop round reached Redis (and was recent), else
        why not. No I/O."""
        error = self._redis_error
        if error is not None:
            return f"redis unreachable: {error}"
        stalled = time.monotonic() - self._round_at
        if stalled > self._block_s + _STALL_S:
            return f"no loop round for {stalled:.1f} s"
        return None

    def stages_problem(self) -> str | None:
        """Readiness: None when every stage this process owns is recovered and caught up
        (its last read drained the stream, or the last entry it applied is at most
        :data:`READY_LAG_S` old); a stage stood by for needs nothing. No I/O."""
        problems = []
        now_ms = time.time() * 1000
        for m in self._markets:
            if m.epoch is None:
                continue
            if m.channel is None:
                problems.append(f"{m.symbol} recovering")
                continue
            if m.drained:
                continue
            age_s = (now_ms - parse_id(m.applied)[0]) / 1000
            if age_s > READY_LAG_S:
                ready = m.ready
                held = len(m.in_hand) + (len(ready.ids) if ready is not None else 0)
                problems.append(f"{m.symbol} catching up ({held} entries in hand, the last "
                                f"applied is {age_s:.1f} s old)")
        return "; ".join(problems) or None

    def run(self, until_applied: Mapping[str, bytes] | None = None) -> int:
        """Serve until stopped; returns the process exit code.

        ``until_applied`` (benchmarks) stops once each listed market has
        committed up to the given input id. Blocks for the life of the engine.
        """
        backoff = _BACKOFF_FIRST_S
        healthy_since: float | None = None
        self._next_stats = time.monotonic() + self.stats_interval_s
        log.info("event=start consumer=%s markets=%s lease_ms=%d batch_size=%d matching_core=%s",
                 self.consumer, ",".join(m.symbol for m in self._markets),
                 self.settings.lease_ms, self.settings.batch_size,
                 "compiled" if matching.COMPILED else "pure")
        try:
            while True:
                try:
                    self._connect()
                    healthy_since = time.monotonic()
                    self._serve(until_applied)
                    return EXIT_OK
                except Fenced as exc:
                    log.error("event=fenced consumer=%s error=%r", self.consumer, str(exc))
                    return EXIT_FENCED
                except RecoveryError as exc:
                    log.error("event=recovery_failed error=%r", str(exc))
                    return EXIT_FATAL
                except (StateLost, CommitConflict) as exc:
                    level, event, error = logging.WARNING, "state_changed", str(exc)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self._redis_error = str(exc) or type(exc).__name__
                    if self._stopping:
                        owned = any(m.epoch is not None for m in self._markets)
                        log.error("event=stop_without_snapshot reason=redis_unavailable "
                                  "error=%r", str(exc))
                        return EXIT_FATAL if owned else EXIT_OK
                    level, event, error = logging.WARNING, "redis_unavailable", str(exc)
                except redis.ResponseError as exc:  # e.g. OOM or MISCONF: retry, then recover
                    level, event, error = logging.ERROR, "redis_error", str(exc)
                    self._redis_error = error
                if healthy_since is not None and time.monotonic() - healthy_since > _HEALTHY_S:
                    backoff = _BACKOFF_FIRST_S  # a fresh failure after a good run
                healthy_since = None
                log.log(level, "event=%s action=recover retry_in_s=%.2f error=%r", event,
                        backoff, error)
                for m in self._markets:
                    m.to_standby()
                self._sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                if self._stopping:
                    log.info("event=stopped consumer=%s snapshot=none", self.consumer)
                    return EXIT_OK
                self._reconnects += 1
        finally:
            self._disconnect()

    # -- the loop -----------------------------------------------------------------

    def _connect(self) -> None:
        self._disconnect()
        self._topology = Topology(self.seeds, cluster=self.cluster,
                                  socket_timeout_s=self._block_s + 10.0)
        self._topology.ping()
        self._topology.load_scripts()

    def _disconnect(self) -> None:
        for m in self._markets:
            m.to_standby()
        if self._topology is not None:
            self._topology.close()
            self._topology = None

    @property
    def topology(self) -> Topology:
        assert self._topology is not None, "not connected"
        return self._topology

    def _serve(self, until_applied: Mapping[str, bytes] | None) -> None:
        self._targets = None if until_applied is None else {
            sym: parse_id(i) for sym, i in until_applied.items()}
        while True:
            now = time.monotonic()
            self._tend_leases(now)
            self._tend_clocks()
            worked = False
            for m in self._markets:
                if m.epoch is None:
                    continue
                if m.ready is not None or (m.in_hand and not self._stopping):
                    self._round(m)
                    worked = True
                elif m.since_snapshot and now - m.snapshot_at >= \
                        self.settings.snapshot_interval_s:
                    self._snapshot(m)
            if self._reached():
                self._stopping = True
            if self._stopping and all(m.ready is None for m in self._markets):
                break
            if worked and any(m.ready is not None or m.in_hand for m in self._markets):
                self._collect(0.0)  # more to do: only take the replies already here
            else:
                self._collect(self._wait_s())
            if now >= self._next_stats:
                self._log_stats(now)
            if self.registration is not None and now >= self._next_register:
                self._register(now)
            self._round_at = time.monotonic()
            self._redis_error = None
        self._shutdown()

    def _reaches_target(self, m: _MarketState, applied: bytes) -> bool:
        """True when committing up to ``applied`` completes ``m``'s ``until_applied`` target."""
        target = None if self._targets is None else self._targets.get(m.symbol)
        return target is not None and parse_id(applied) >= target

    def _reached(self) -> bool:
        """True once every ``until_applied`` target is committed (never without targets)."""
        targets = self._targets
        return targets is not None and all(parse_id(m.applied) >= targets[m.symbol]
                                           for m in self._markets if m.symbol in targets)

    def _apply(self, m: _MarketState, entries: list[RawEntry]) -> _Applied:
        events, effects = m.core.apply(entries)
        return _Applied([e[0] for e in entries], events, effects)

    def _round(self, m: _MarketState) -> None:
        """Commit the applied batch (reading more), applying the next one meanwhile."""
        channel = m.channel
        assert m.epoch is not None and channel is not None and not channel.read_held
        n = self.settings.batch_size
        if m.ready is None:
            m.ready = self._apply(m, m.in_hand[:n])
            del m.in_hand[:n]
        ready = m.ready
        count = len(ready.ids)
        snapshot_due = (m.since_snapshot + count >= self.settings.snapshot_every
                        or time.monotonic() - m.snapshot_at >= self.settings.snapshot_interval_s)
        overlap: list[RawEntry] = []
        if not (self._stopping or snapshot_due):
            overlap = m.in_hand[:n]
            del m.in_hand[:n]
        # Keep about two batches delivered ahead: one to apply during each round trip.
        read = 0 if self._stopping else max(0, 2 * n - len(m.in_hand) - len(overlap))
        streams: Sequence[str] = (m.keys.input,)
        block_ms = None
        if read and not overlap and not m.in_hand and not snapshot_due \
                and not self._reaches_target(m, ready.ids[-1]):
            # Nothing left to do after this commit: the read waits for the market's next
            # entries, held on its connection (_collect takes the reply), saving a round trip.
            block_ms = self._block_ms()
        before = None
        if ready.effects is not None:
            before = m.stage.before_commit(self.topology, m.keys.input, ready.effects)
            if before is not None:
                ready.effects = None  # they go in the commit's write
        started = time.perf_counter()
        channel.send(m.keys, m.epoch, self.consumer, m.applied, ready.ids, ready.events,
                     read, streams, block_ms, hold_read=block_ms is not None, before=before)
        following = self._apply(m, overlap) if overlap else None
        out_id, committed_at, reply = channel.receive()
        latency = committed_at - started
        if read and block_ms is None:
            self._take(m, reply, read)
        elif read:
            m.read_asked = read
        if ready.effects is not None:
            m.stage.after_commit(self.topology, ready.effects)
        m.applied = ready.ids[-1]
        m.ready = following
        if out_id is not None:
            m.last_out_id = out_id
        m.since_snapshot += count
        stats = m.stats
        stats.applied += count
        stats.interval_applied += count
        stats.batches += 1
        stats.interval_batches += 1
        stats.max_batch = max(stats.max_batch, count)
        stats.interval_latencies_s.append(latency)
        if self.record_latencies:
            stats.commit_latencies_s.append(latency)
        if m.observe_batch is not None:
            m.observe_batch(count)
            m.observe_commit(latency)
        if snapshot_due and m.ready is None:
            self._snapshot(m)

    def _block_ms(self) -> int:
        """BLOCK of a held read: until the next lease action is due, at most the block time."""
        return max(1, int(self._wait_s() * 1000))

    def _wait_s(self) -> float:
        """How long the loop may wait: until the next lease action or clock entry due, at
        most the block time."""
        due = min(m.next_lease for m in self._markets)
        if self.registration is not None:
            due = min(due, self._next_register)
        due -= time.monotonic()
        clock = self._next_clock_ms()
        if clock is not None:
            due = min(due, (clock - time.time() * 1000) / 1000)
        return max(0.001, min(self._block_s, due))

    def _next_clock_ms(self) -> int | None:
        """The earliest due time of an owned core that has no clock entry yet. O(markets)."""
        dues = [d for m in self._markets if m.epoch is not None
                and (d := m.core.next_due_ms()) is not None and d > m.clock_sent]
        return min(dues) if dues else None

    def _tend_clocks(self) -> None:
        """Append a ``Clock`` entry for every idle owned core whose due time has come.

        Its id is the due time itself (``<due>-*``), so the core sees that
        clock; if the stream already holds a later entry Redis refuses the id,
        and that entry moves the clock instead. O(markets) when nothing is due.
        """
        now_ms = time.time() * 1000
        for m in self._markets:
            if m.epoch is None or m.in_hand or m.ready is not None:
                continue
            due = m.core.next_due_ms()
            if due is None or due <= m.clock_sent or due > now_ms:
                continue
            m.clock_sent = due
            try:
                self.topology.call(m.keys.input, "XADD", m.keys.input, f"{due}-*", IN_FIELD,
                                   _CLOCK)
            except redis.ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
            else:
                m.stats.clock_entries += 1

    def _take(self, m: _MarketState, reply: StreamEntries, asked: int) -> None:
        """Hand the entries of a read of ``m``'s stream (of up to ``asked``) to ``m``."""
        got = 0
        for key, entries in reply:
            target = self._by_input_key.get(key, m)
            target.in_hand += entries
            got += len(entries)
        m.drained = got < asked

    def _collect(self, timeout_s: float) -> None:
        """Take the held reads' replies that arrived; hold a read for every idle market.

        Waits up to ``timeout_s`` (0: not at all) for a first reply, with one
        ``select`` over the markets' connections. O(owned markets).
        """
        held: list[_MarketState] = []
        for m in self._markets:
            channel = m.channel
            if channel is None or m.epoch is None:
                continue
            if not channel.read_held:
                if self._stopping or m.ready is not None or m.in_hand:
                    continue
                channel.start_read(self.consumer, self.settings.batch_size, (m.keys.input,),
                                   self._block_ms())
                m.read_asked = self.settings.batch_size
            held.append(m)
        if not held:
            if timeout_s > 0:
                self._sleep(timeout_s)
            return
        ready = [m for m in held if m.channel is not None and m.channel.buffered()]
        if not ready and len(held) == 1 and timeout_s > 0:
            # One market waiting: its read's own BLOCK (at most the wait) is the timeout,
            # and a blocking receive costs one system call, where select costs two.
            ready = held
        elif not ready:
            fds = {m.channel.fileno(): m for m in held if m.channel is not None}
            readable, _, _ = select.select(list(fds), [], [], timeout_s)
            ready = [fds[fd] for fd in readable]
        for m in ready:
            assert m.channel is not None
            self._take(m, m.channel.take_read(), m.read_asked)

    def _tend_leases(self, now: float) -> None:
        """Renew owned leases and try to take the others, each when due."""
        for m in self._markets:
            if now < m.next_lease:
                continue
            if m.epoch is not None:
                renew(self.topology, m.keys, self.consumer, self.settings.lease_ms, m.epoch)
                m.next_lease = now + self._renew_every_s
            elif not self._stopping:
                epoch = acquire(self.topology, m.keys, self.consumer, self.settings.lease_ms)
                if epoch is None:
                    m.next_lease = now + self._poll_every_s
                    continue
                m.epoch = epoch
                m.next_lease = time.monotonic() + self._renew_every_s
                log.info("event=lease_taken market=%s consumer=%s epoch=%d",
                         m.symbol, self.consumer, epoch)
                self._recover(m)

    def _renew_if_due(self, m: _MarketState) -> None:
        now = time.monotonic()
        if m.epoch is not None and now >= m.next_lease:
            renew(self.topology, m.keys, self.consumer, self.settings.lease_ms, m.epoch)
            m.next_lease = now + self._renew_every_s

    def _recover(self, m: _MarketState) -> None:
        started = time.perf_counter()
        rec = recover(self.topology, m.stage, self.consumer,
                      on_chunk=lambda: self._renew_if_due(m))
        m.stage.after_recover(self.topology, rec.core)
        if m.channel is not None:
            self.topology.drop(m.channel)
        m.channel = self.topology.hot(m.keys.input)
        m.core = rec.core
        m.applied = rec.applied
        m.last_out_id = rec.last_out_id
        m.ready = None
        m.in_hand = rec.backlog  # older than anything a read returns next: order kept
        m.since_snapshot = rec.replayed
        m.snapshot_at = time.monotonic()
        m.stats.recoveries += 1
        m.stats.replayed += rec.replayed
        log.info("event=recovered market=%s epoch=%s snapshot_input_id=%s applied=%s "
                 "replayed=%d claimed=%d acked_without_apply=%d %s ms=%.1f",
                 m.symbol, m.epoch, rec.snapshot_input_id.decode(), rec.applied.decode(),
                 rec.replayed, len(rec.backlog), rec.skipped, m.core.summary(),
                 (time.perf_counter() - started) * 1000)

    def _snapshot(self, m: _MarketState) -> None:
        """Write a snapshot at the last commit and trim the streams behind it.

        Only called while nothing is applied beyond ``m.applied``.
        """
        assert m.epoch is not None and m.ready is None
        started = time.perf_counter()
        blob = m.core.snapshot(m.applied.decode(), m.last_out_id.decode())
        trimmed_in, trimmed_out = write_snapshot(self.topology, m.keys, m.epoch, blob, m.applied,
                                                 self.settings.out_retention)
        m.since_snapshot = 0
        m.snapshot_at = time.monotonic()
        m.stats.snapshots += 1
        log.debug("event=snapshot market=%s input_id=%s %s bytes=%d "
                  "trimmed_in=%d trimmed_out=%d ms=%.1f", m.symbol, m.applied.decode(),
                  m.core.summary(), len(blob), trimmed_in, trimmed_out,
                  (time.perf_counter() - started) * 1000)

    def _shutdown(self) -> None:
        self._log_stats(time.monotonic())
        for m in self._markets:
            if m.epoch is None:
                continue
            self._snapshot(m)
            release(self.topology, m.keys, self.consumer, m.epoch)
            log.info("event=stopped market=%s applied=%s seq=%d snapshot=written",
                     m.symbol, m.applied.decode(), m.core.seq)
            m.epoch = None
        if self.registration is not None:
            self._unregister(self.registration)

    # -- registration ---------------------------------------------------------------

    def _register(self, now: float) -> None:
        """SET the registration (its ``owned`` now) with its TTL on its key's node; a Redis
        error is logged and retried at the next refresh. One round trip."""
        reg = self.registration
        assert reg is not None
        self._next_register = now + REFRESH_S
        reg.owned = [m.symbol for m in self._markets if m.epoch is not None]
        reg.updated_ms = int(time.time() * 1000)
        key = service_key(reg.service, reg.instance)
        try:
            self.topology.call(key, "SET", key, msgspec.json.encode(reg), "PX", TTL_MS)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            log.warning("event=registration_failed service=%s error=%r", reg.service, str(exc))

    def _unregister(self, reg: Registration) -> None:
        key = service_key(reg.service, reg.instance)
        try:
            self.topology.call(key, "DEL", key)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            log.warning("event=unregister_failed service=%s error=%r", reg.service, str(exc))

    def _log_stats(self, now: float) -> None:
        interval = self.stats_interval_s - (self._next_stats - now)
        self._next_stats = now + self.stats_interval_s
        for m in self._markets:
            s = m.stats
            if m.epoch is None and not s.interval_batches:
                continue
            lat = sorted(s.interval_latencies_s)
            lag = self._lag(m) if m.epoch is not None else None
            # An idle market's line says nothing new: kept for --log-level debug.
            log.log(
                logging.INFO if s.interval_batches else logging.DEBUG,
                "event=stats market=%s owner=%s applied_total=%d batches_total=%d "
                "applied=%d per_s=%.0f batches=%d avg_batch=%.1f max_batch=%d "
                "commit_p50_ms=%.3f commit_p99_ms=%.3f commit_max_ms=%.3f lag=%s",
                m.symbol, m.epoch is not None, s.applied, s.batches, s.interval_applied,
                s.interval_applied / interval if interval > 0 else 0.0, s.interval_batches,
                s.interval_applied / s.interval_batches if s.interval_batches else 0.0,
                s.max_batch, _pct(lat, 0.5) * 1000, _pct(lat, 0.99) * 1000,
                (lat[-1] if lat else 0.0) * 1000, lag)
            s.interval_applied = 0
            s.interval_batches = 0
            s.interval_latencies_s = []

    def _lag(self, m: _MarketState) -> int | None:
        """Entries in ``:in`` not yet delivered to the group (Redis 7's XINFO lag)."""
        try:
            groups = self.topology.call(m.keys.input, "XINFO", "GROUPS", m.keys.input)
        except redis.ResponseError:
            return None
        for group in groups:
            fields = dict(zip(group[::2], group[1::2], strict=True))
            if fields.get(b"name") == ENGINE_GROUP.encode():
                lag = fields.get(b"lag")
                return int(lag) if lag is not None else None
        return None

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def _ignore(value: float) -> None:
    """An observer that observes nothing (metrics off)."""


def _pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


__all__ = ["EXIT_FATAL", "EXIT_FENCED", "EXIT_OK", "EngineRunner", "MarketStats"]

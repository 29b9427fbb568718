"""The ``streamex history`` process: follow every ``:out`` stream into the database.

For every market and every risk shard, :class:`HistoryService` reads the
position stored in the database, follows the stream from there with
blocking ``XREAD`` (``redisio.tail``; one reader per group of streams that
one command may cover: on one server all of them, on a Redis Cluster one per
slot, on the node the topology names), turns the entries into rows
(``history.project``) and writes them with the streams' new positions in one
transaction (``Store.write``). Batching costs no delay: a write starts as
soon as the previous one has finished and takes every entry read meanwhile,
up to ``batch_entries``; reads and the projection go on while a write runs
(it runs in a thread of its own).

Exactly once: a write moves each position only from the one it was
projected from, so after a ``kill -9`` at any moment the restarted process
resumes from what the database holds, and a second process on the same
database makes the first's next write conflict (``PositionConflict``); the
loser drops everything in flight, reloads the state and reads on. Gaps
(retention trimmed what was never read) are logged as warnings and stored
as ``gaps`` rows. Lost Redis connections are retried from the same position
with a growing delay, database failures likewise from the database's state.

Logs (logfmt, ``streamex.logs``): ``event=ready service=history ...`` once
every stream has been read to its end and written, ``event=stats ...``
every ``stats_interval_s``, ``event=gap ...``.

Operations: with ``metrics`` (``history.metrics``) each write observes its
duration; everything else is read at scrape time from plain attributes
(:meth:`HistoryService.stream_status`, :meth:`HistoryService.totals`): per
stream the entries written, and those read and not yet written with the
oldest one's time (tracked per read, not per entry). Readiness
(:meth:`HistoryService.redis_problem`, :meth:`~HistoryService.database_problem`,
:meth:`~HistoryService.lag_problem`) reads the same attributes, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from contract.ids import parse_id
from contract.keys import out_stream
from contract.risk import risk_keys, risk_tag
from history.metrics import HistoryMetrics, StreamStatus
from history.project import Notice, Projection
from redisio.tail import StreamTail
from redisio.topology import Topology
from store.batch import Batch, ResumeState
from store.db import PositionConflict, Store, StoreError

log = logging.getLogger("streamex.history")

READ_COUNT_MAX = 1000
"""XREAD COUNT: most entries of one stream per read (at most ``batch_entries``)."""
BLOCK_MS = 1000
QUEUE_READS = 16
"""Reads buffered ahead of the projection (each at most READ_COUNT_MAX entries a stream)."""
FIRST_RETRY_S = 0.05
RETRY_S = 2.0
READY_LAG_S = 5.0
"""Ready while no entry read has waited longer than this to be written."""

Item = tuple[bytes, list[Any], int]
"""A read queued for the projection: stream key, its entries, the read's number."""


@dataclass
class Counters:
    """What the service has done since it started (the stats line, tests, the benchmark)."""

    entries: int = 0
    """Stream entries committed."""
    events: int = 0
    rows: int = 0
    orders: int = 0
    """Order rows upserted (an order touched by several batches counts in each)."""
    batches: int = 0
    gaps: int = 0
    conflicts: int = 0
    """Writes refused because another writer moved a position (reloads)."""
    errors: int = 0
    reconnects: int = 0
    """Redis reads retried after a failure."""
    write_s: float = 0.0
    """Time spent in ``Store.write``."""


class HistoryService:
    """Copies ``symbols``' and risk ``shards``' ``:out`` streams into ``store``; run
    :meth:`run`. ``topology`` is initialized by the caller (and closed by it)."""

    def __init__(self, store: Store, topology: Topology, symbols: Sequence[str],
                 shards: Sequence[int], *, batch_entries: int = 2000, block_ms: int = BLOCK_MS,
                 read_interval_s: float = 0.0, stats_interval_s: float = 60.0,
                 metrics: HistoryMetrics | None = None) -> None:
        self.store = store
        self.topology = topology
        self.symbols = list(symbols)
        self.batch_entries = batch_entries
        self.block_ms = block_ms
        self.read_interval_s = read_interval_s
        self.stats_interval_s = stats_interval_s
        self.counters = Counters()
        self.ready = asyncio.Event()
        """Set once every stream was read to its end and everything read was written."""
        # stream key -> (stream name in the database, risk shard or None for a market)
        self._streams: dict[bytes, tuple[str, int | None]] = {
            out_stream(s).encode(): (s, None) for s in self.symbols}
        for k in shards:
            self._streams[risk_keys(k).output.encode()] = (risk_tag(k), k)
        self._count = min(batch_entries, READ_COUNT_MAX)
        self._enqueued = 0
        self._projected = 0
        self._committed = 0
        self._marks: dict[int, int] = {}
        self._groups = 0
        # Reads not yet written: number -> (stream name, entries); per stream, in read order,
        # (number, first entry's id ms, entries). Touched by the loop only.
        self._unwritten: dict[int, tuple[str, int]] = {}
        self._by_stream: dict[str, deque[tuple[int, int, int]]] = {
            name: deque() for name, _ in self._streams.values()}
        self._in_flight: dict[str, int] = {name: 0 for name in self._by_stream}  # entries
        self._next_read = 0
        self._taken: list[int] = []  # reads projected into the batch being built
        # Plain attributes for the scrape and the readiness checks (another thread): their
        # keys never change, values are replaced whole.
        self._written: dict[str, int] = {name: 0 for name in self._by_stream}
        self._lag: dict[str, tuple[int, int | None]] = {
            name: (0, None) for name in self._by_stream}
        self._read_errors: list[str | None] = []
        self._db_error: str | None = None
        self._observe_write = None if metrics is None else metrics.write_seconds.observe
        if metrics is not None:
            metrics.attach(self)

    # -- operations: what the scrape and the readiness checks read ----------------------

    def stream_status(self) -> list[StreamStatus]:
        """Every stream's written entries and what is read but not written; from plain
        attributes, safe from another thread. O(streams)."""
        lag = self._lag
        return [StreamStatus(name, written, *lag[name])
                for name, written in list(self._written.items())]

    def totals(self) -> dict[str, int]:
        c = self.counters
        return {"rows": c.rows, "batches": c.batches, "gaps": c.gaps,
                "conflicts": c.conflicts, "errors": c.errors, "reconnects": c.reconnects}

    def redis_problem(self) -> str | None:
        """Readiness: None when every reader's last read succeeded."""
        errors = [e for e in list(self._read_errors) if e is not None]
        return f"redis unreachable: {errors[0]}" if errors else None

    def database_problem(self) -> str | None:
        """Readiness: None unless the last database call failed."""
        error = self._db_error
        return None if error is None else f"database unavailable: {error}"

    def lag_problem(self) -> str | None:
        """Readiness: None once caught up (every stream read to its end and written once)
        and while no entry read has waited over :data:`READY_LAG_S` to be written."""
        if not self.ready.is_set():
            return "catching up: not every stream was read to its end and written yet"
        now_ms = time.time() * 1000
        behind = sorted(((now_ms - oldest) / 1000, name)
                        for name, (_, oldest) in list(self._lag.items())
                        if oldest is not None and now_ms - oldest > READY_LAG_S * 1000)
        if not behind:
            return None
        return "behind: " + ", ".join(f"{name} {age:.1f} s" for age, name in behind[::-1])

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the streams until ``stop`` is set; then finish the write in flight (and
        write what was already projected) and return. Never raises for Redis or database
        failures: they are logged and retried."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="history-db")
        stats = asyncio.create_task(self._stats())
        delay = FIRST_RETRY_S
        try:
            while not stop.is_set():
                try:
                    state = await self._load_state(executor)
                    self._db_error = None
                    log.info("event=resumed db=%s positions=%s", self.store.url, ",".join(
                        f"{s}:{p[0]}/{p[1]}" for s, p in sorted(state.positions.items()))
                        or "none")
                    await self._follow(Projection(state, self.symbols), executor, stop)
                    delay = FIRST_RETRY_S
                except PositionConflict as exc:
                    self.counters.conflicts += 1
                    log.info("event=position_conflict error=%s action=reload",
                             _quote(str(exc)))
                except StoreError as exc:
                    self.counters.errors += 1
                    self._db_error = str(exc) or type(exc).__name__
                    log.warning("event=db_error db=%s error=%s retry_in_s=%.2f", self.store.url,
                                _quote(str(exc)), delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, RETRY_S)
        finally:
            stats.cancel()
            executor.shutdown(wait=True)

    async def _load_state(self, executor: ThreadPoolExecutor) -> ResumeState:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.store.load_state, self.symbols)

    # -- one pass: from the database's state until stopped or a write fails --------------

    async def _follow(self, projection: Projection, executor: ThreadPoolExecutor,
                      stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_READS)
        groups = self.topology.groups(list(self._streams))
        self._groups = len(groups)
        self._marks.clear()
        self._enqueued = self._projected = self._committed = 0
        self._unwritten.clear()
        for name, chunks in self._by_stream.items():
            chunks.clear()  # what each stream lags is published again by its next read
            self._in_flight[name] = 0
        self._taken = []
        self._read_errors = [None] * len(groups)
        readers = [asyncio.create_task(self._read(i, {k: projection.position(
            self._streams[k][0])[0].encode() for k in keys}, queue))
            for i, keys in enumerate(groups)]
        pending: asyncio.Future[None] | None = None
        pending_batch: tuple[Batch, int, float, list[int]] | None = None
        getter: asyncio.Task[Item] | None = None
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                if pending is not None and pending.done():
                    assert pending_batch is not None
                    pending.result()  # PositionConflict / StoreError end this pass
                    self._done(*pending_batch)
                    pending = pending_batch = None
                if pending is None and projection.pending_entries:
                    batch = projection.take()
                    pending_batch = (batch, self._projected, time.perf_counter(), self._taken)
                    self._taken = []
                    pending = loop.run_in_executor(executor, self.store.write, batch)
                    continue
                if stop.is_set():
                    if pending is None:
                        return
                    await asyncio.wait([pending])
                    continue
                waits: set[asyncio.Future[Any]] = {stopper}
                if pending is not None:
                    waits.add(pending)
                if projection.pending_entries < self.batch_entries:
                    if getter is None:
                        getter = asyncio.create_task(queue.get())
                    waits.add(getter)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter is not None and getter in done:
                    self._project(projection, getter.result())
                    getter = None
                    while projection.pending_entries < self.batch_entries and not queue.empty():
                        self._project(projection, queue.get_nowait())
        finally:
            for task in [*readers, stopper, *([getter] if getter else [])]:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if pending is not None and not pending.done():
                await asyncio.wait([pending])  # let the thread finish before anyone reloads

    def _project(self, projection: Projection, item: Item) -> None:
        key, entries, number = item
        name, shard = self._streams[key]
        self._taken.append(number)
        now = int(time.time() * 1000)
        if shard is None:
            notices = projection.add_market(name, entries, now)
        else:
            notices = projection.add_risk(shard, entries, now)
        self._projected += 1
        for notice in notices:
            self._log_notice(notice)

    def _done(self, batch: Batch, items: int, started: float, reads: list[int]) -> None:
        """A write committed: count it and see whether the service is now caught up."""
        c = self.counters
        elapsed = time.perf_counter() - started
        c.write_s += elapsed
        if self._observe_write is not None:
            self._observe_write(elapsed)
        self._db_error = None
        touched = set()
        for number in reads:
            name, count = self._unwritten.pop(number)
            chunks = self._by_stream[name]
            while chunks and chunks[0][0] <= number:  # a stream's reads are written in order
                chunks.popleft()
            self._written[name] += count
            self._in_flight[name] -= count
            touched.add(name)
        for name in touched:
            self._publish(name)
        c.batches += 1
        c.entries += batch.entries
        c.events += batch.events
        c.rows += batch.rows
        c.orders += len(batch.orders)
        c.gaps += len(batch.gaps)
        self._committed = items
        self._check_ready()

    def _check_ready(self) -> None:
        if self.ready.is_set() or len(self._marks) < self._groups:
            return
        if self._committed >= max(self._marks.values(), default=0):
            self.ready.set()
            log.info("event=ready service=history db=%s streams=%d entries=%d",
                     self.store.url, len(self._streams), self.counters.entries)

    # -- readers -------------------------------------------------------------------------

    def _note_read(self, key: bytes, entries: list[Any]) -> int:
        """Track a read until it is written; returns its number. O(1)."""
        number = self._next_read
        self._next_read += 1
        name = self._streams[key][0]
        self._unwritten[number] = (name, len(entries))
        self._by_stream[name].append((number, parse_id(entries[0][0])[0], len(entries)))
        self._in_flight[name] += len(entries)
        self._publish(name)
        return number

    def _publish(self, name: str) -> None:
        """Replace the stream's ``(unwritten entries, oldest id ms)`` for other threads."""
        chunks = self._by_stream[name]
        self._lag[name] = (self._in_flight[name], chunks[0][1]) if chunks else (0, None)

    async def _read(self, group: int, positions: dict[bytes, bytes],
                    queue: asyncio.Queue[Item]) -> None:
        """Read ``positions``' streams on and queue each reply's entries, until cancelled.
        Marks the group caught up after its first read that did not fill COUNT."""
        tail = StreamTail(self.topology, self._count, min_interval_s=self.read_interval_s)
        delay = FIRST_RETRY_S
        try:
            while True:
                try:
                    reply = await tail.read(positions, self.block_ms)
                except RedisError as exc:
                    self.counters.reconnects += 1
                    self._read_errors[group] = str(exc) or type(exc).__name__
                    log.warning("event=redis_retry streams=%s error=%s retry_in_s=%.2f",
                                ",".join(k.decode() for k in positions), _quote(str(exc)),
                                delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_S)
                    continue
                delay = FIRST_RETRY_S
                self._read_errors[group] = None
                short = True
                for key, entries in reply:
                    if not entries:
                        continue
                    positions[key] = entries[-1][0]
                    short = short and len(entries) < self._count
                    await queue.put((key, entries, self._note_read(key, entries)))
                    self._enqueued += 1
                for key in positions:
                    name = self._streams[key][0]
                    if not self._by_stream[name]:
                        self._publish(name)  # nothing of it in flight (after a reload)
                if short and group not in self._marks:
                    self._marks[group] = self._enqueued
                    self._check_ready()
        finally:
            await tail.close()

    # -- logs ----------------------------------------------------------------------------

    def _log_notice(self, n: Notice) -> None:
        if n.kind == "gap":
            log.warning("event=gap stream=%s after_id=%s first_id=%s lost_from_seq=%d "
                        "lost_to_seq=%d lost_events=%d msg=%s", n.stream, n.after_id,
                        n.entry_id, n.first_seq, n.last_seq, n.last_seq - n.first_seq + 1,
                        _quote("retention trimmed these events before history read them"))
        elif n.kind == "undecodable":
            log.error("event=undecodable stream=%s entry_id=%s action=skipped", n.stream,
                      n.entry_id)
        else:
            log.info("event=republished stream=%s entry_id=%s seqs=%d..%d action=skipped",
                     n.stream, n.entry_id, n.first_seq, n.last_seq)

    async def _stats(self) -> None:
        last = Counters()
        last_t = time.monotonic()
        while True:
            await asyncio.sleep(self.stats_interval_s)
            c, now = self.counters, time.monotonic()
            elapsed = max(now - last_t, 1e-9)
            log.info("event=stats entries=%d events=%d rows=%d batches=%d gaps=%d conflicts=%d "
                     "errors=%d entries_per_s=%.0f events_per_s=%.0f write_s=%.3f", c.entries,
                     c.events, c.rows, c.batches, c.gaps, c.conflicts, c.errors,
                     (c.entries - last.entries) / elapsed, (c.events - last.events) / elapsed,
                     c.write_s - last.write_s)
            last = Counters(**vars(c))
            last_t = now


def _quote(text: str) -> str:
    """A logfmt value (quoted, one line)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'

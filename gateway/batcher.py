"""XADD batching: concurrent requests reach Redis in one pipelined round trip per node.

Sessions call :meth:`XaddBatcher.submit` (synchronous, O(1)) and await the
returned future for the entry id. Each stream is routed to the node that
serves it (``redisio.topology``: a single server has one node, a cluster
one per primary), and each node has a lane: a queue and one task that
drains everything queued so far into one pipelined write, reads the replies
and resolves each future in submission order; whatever arrives meanwhile
waits for that node's next round trip. So a lone order costs one round trip
and a thousand concurrent ones cost a few per node, never one each; the
nodes' pipelines run concurrently and a slow or dead node holds up only its
own markets.

Each lane keeps its own :class:`~redisio.resp.RespConnection` and writes the
XADDs packed by hiredis (C), bypassing redis-py's pipeline object (~40 us of
Python per round trip at low rates) and its reply path (a task wake-up and
~12 us more per round trip).

Failures, per node:

- a round trip that fails (connection lost, nothing listening) or takes
  longer than ``reply_timeout_s`` drops that node's connection: its requests
  fail (unconfirmed: they may or may not be in the stream), the slot map is
  reloaded and the next batch reconnects (or goes where the new map says);
- a ``MOVED``/``ASK`` reply means that XADD was not applied: it is retried
  on the node the reply names (``ASKING`` first for ``ASK``), at most
  :data:`MAX_REDIRECTS` times, else it fails; after a ``MOVED`` the stream's
  later entries follow it there, in order, and the slot map is reloaded;
- with ``wait_replicas`` (``durability = "replicated"``) every pipeline ends
  with ``WAIT wait_replicas wait_timeout_ms``: its futures resolve only if
  that many replicas acknowledged, else they fail with :class:`Unconfirmed`
  (the entries are in the primary's stream, and may be lost in a failover).

A stream's entries keep their submission order, except around an ``ASK``
(a slot being migrated) or a second redirect in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import RedisError, ResponseError

from redisio.resp import RespConnection, reply_within, time_left
from redisio.topology import Node, Redirect, Topology, is_cluster_error, redirect_of

log = logging.getLogger(__name__)

Fields = dict[bytes, bytes]
REPLY_TIMEOUT_S = 5.0
MAX_REDIRECTS = 3
"""How many times one XADD follows a MOVED/ASK before it fails."""

# (stream, fields, future, redirects so far, send ASKING first)
_Item = tuple[str, Fields, "asyncio.Future[str]", int, bool]
_ASKING: bytes = pack_command(("ASKING",))


class Unconfirmed(RedisError):
    """The XADD was not confirmed as asked (by a replica, or at all): it may or may not
    be in the stream, and may be lost in a failover."""


class _Lane:
    """One node's queue, task and connection."""

    __slots__ = ("node", "pending", "wakeup", "task", "conn", "epoch")

    def __init__(self, node: Node, epoch: int) -> None:
        self.node = node
        self.pending: list[_Item] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.conn: RespConnection | None = None
        self.epoch = epoch
        """The topology epoch its pending entries were last routed by."""


class XaddBatcher:
    """Per-process queues of XADDs, one per node, flushed as pipelines by one task each.

    ``redis`` is the topology (or a single-server redis-py client).
    ``max_batch`` caps one pipeline. ``on_added(stream, n)`` is called after
    each pipeline with how many entries went to each stream (for the backlog
    estimate). Counters ``pipelines`` and ``entries`` are for tests and stats.
    """

    def __init__(self, redis: Topology | aioredis.Redis, max_batch: int = 2048,
                 on_added: Callable[[str, int], None] | None = None,
                 reply_timeout_s: float = REPLY_TIMEOUT_S, *, wait_replicas: int = 0,
                 wait_timeout_ms: int = 1000) -> None:
        self._topology = redis if isinstance(redis, Topology) else Topology.of_client(redis)
        self._max_batch = max_batch
        self._on_added = on_added
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._wait: bytes | None = pack_command(
            ("WAIT", wait_replicas, wait_timeout_ms)  # type: ignore[arg-type]
        ) if wait_replicas > 0 else None
        self._timeout_s = reply_timeout_s + (wait_timeout_ms / 1000 if wait_replicas else 0)
        self._lanes: dict[str, _Lane] = {}
        self._route: dict[str, _Lane] = {}
        self._running = False
        self._crashed: asyncio.Future[None] | None = None
        self.pipelines = 0
        self.entries = 0
        self.failures = 0
        """Pipelines that failed (connection lost, timed out): each drops its connection."""

    def submit(self, stream: str, fields: Fields) -> asyncio.Future[str]:
        """Queue ``XADD stream * fields``; the future gets the entry id or the Redis error."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        lane = self._route.get(stream)
        if lane is None:
            try:
                lane = self._route[stream] = self._lane(self._topology.node_for(stream))
            except RedisError as exc:  # the slot is not served now
                self._topology_changed()
                future.set_exception(exc)
                return future
        lane.pending.append((stream, fields, future, 0, False))
        lane.wakeup.set()
        return future

    async def run(self) -> None:
        """Flush forever (until cancelled); queued futures then fail with CancelledError.

        Raises the error of a lane that failed unexpectedly (a bug)."""
        crashed = self._crashed = asyncio.get_running_loop().create_future()
        self._running = True
        try:
            for lane in list(self._lanes.values()):
                self._start(lane)
            await crashed
        finally:
            self._running = False
            tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for lane in self._lanes.values():
                lane.task = None
                for _, _, future, _, _ in lane.pending:
                    future.cancel()
                lane.pending.clear()
                self._drop_connection(lane)

    # -- lanes ----------------------------------------------------------------------

    def _lane(self, node: Node) -> _Lane:
        lane = self._lanes.get(node.name)
        if lane is None:
            lane = self._lanes[node.name] = _Lane(node, self._topology.epoch)
            if self._running:
                self._start(lane)
        return lane

    def _start(self, lane: _Lane) -> None:
        lane.task = asyncio.get_running_loop().create_task(self._serve(lane),
                                                           name=f"xadd {lane.node.name}")
        lane.task.add_done_callback(self._lane_done)

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        crashed = self._crashed
        if task.cancelled() or crashed is None or crashed.done():
            return
        exc = task.exception()
        if exc is not None:
            crashed.set_exception(exc)

    async def _serve(self, lane: _Lane) -> None:
        pending = lane.pending
        while True:
            await lane.wakeup.wait()
            lane.wakeup.clear()
            while pending:
                if lane.epoch != self._topology.epoch:
                    self._reroute(lane)
                    if not pending:
                        break
                batch = pending[: self._max_batch]
                del pending[: self._max_batch]
                await self._flush(lane, batch)

    def _reroute(self, lane: _Lane) -> None:
        """After a slot map reload: move the lane's queued (unsent) entries whose stream
        another node serves now to that node's lane, in order, and route the stream there.

        Runs between two of the lane's round trips, so none of those streams' entries
        is in flight here, nor queued at the new node (they were routed here)."""
        topology = self._topology
        lane.epoch = topology.epoch
        keep: list[_Item] = []
        moved: dict[str, list[_Item]] = {}
        targets: dict[str, _Lane] = {}
        for item in lane.pending:
            if item[4]:  # an ASK's retry: its node is the one the reply named
                keep.append(item)
                continue
            stream = item[0]
            target = targets.get(stream)
            if target is None:
                try:
                    target = self._lane(topology.node_for(stream))
                except RedisError:
                    target = lane  # not served now: it fails or is redirected here
                targets[stream] = target
            if target is lane:
                keep.append(item)
            else:
                moved.setdefault(target.node.name, []).append(item)
        if not moved:
            return
        lane.pending[:] = keep
        for stream, target in targets.items():
            if target is not lane and self._route.get(stream) is lane:
                self._route[stream] = target
        for name, items in moved.items():
            target = self._lanes[name]
            target.pending.extend(items)
            target.wakeup.set()

    # -- round trips ----------------------------------------------------------------

    async def _round_trip(self, lane: _Lane, batch: list[_Item]) -> tuple[list[Any], bool]:
        """Send the batch's XADDs in one write; their replies (id or ResponseError) in
        order, and whether the pipeline's WAIT (if any) was satisfied."""
        packed = []
        asking = False
        for stream, fields, _, _, ask in batch:
            if ask:
                asking = True
                packed.append(_ASKING)
            packed.append(_pack_xadd(stream, fields))
        if self._wait is not None:
            packed.append(self._wait)
        timeout_s = self._timeout_s
        conn = lane.conn
        if conn is None or conn.closed:  # one bound for the connect and the round trip
            deadline = asyncio.get_running_loop().time() + timeout_s
            async with asyncio.timeout_at(deadline):
                conn = lane.conn = await self._topology.connect(lane.node)
            timeout_s = time_left(deadline)
        replies = conn.send(packed)
        # Replies come in order: the last one done means all are.
        with contextlib.suppress(ResponseError):  # that command's own error, kept below
            await reply_within(replies[-1], timeout_s)
        results = [r.exception() or r.result() for r in replies]
        confirmed = True
        if self._wait is not None:
            acks = results.pop()
            confirmed = isinstance(acks, int) and acks >= self._wait_replicas
        if asking:  # drop the ASKING replies
            out, i = [], 0
            for item in batch:
                if item[4]:
                    i += 1
                out.append(results[i])
                i += 1
            results = out
        return results, confirmed

    def _drop_connection(self, lane: _Lane) -> None:
        """Close the lane's connection (its replies can no longer be matched); the next
        batch opens another."""
        conn, lane.conn = lane.conn, None
        if conn is not None:
            conn.close()

    async def _flush(self, lane: _Lane, batch: list[_Item]) -> None:
        try:
            results, confirmed = await self._round_trip(lane, batch)
        except asyncio.CancelledError:
            for item in batch:
                item[2].cancel()
            raise
        except Exception as exc:  # connection lost, timed out, ...: none of the batch is confirmed
            log.warning("XADD pipeline of %d to %s failed: %r", len(batch), lane.node.name, exc)
            self.failures += 1
            self._drop_connection(lane)
            for item in batch:
                if not item[2].done():
                    item[2].set_exception(exc)
            await self._topology.refresh()  # a failover may be under way
            return
        self.pipelines += 1
        counts: dict[str, int] = {}
        redirected: list[tuple[_Item, Redirect]] = []
        reload = False
        unconfirmed: Unconfirmed | None = None
        for item, result in zip(batch, results, strict=True):
            stream, _, future, tries, _ = item
            if isinstance(result, Exception):
                redirect = redirect_of(result)
                if redirect is not None and tries < MAX_REDIRECTS:
                    redirected.append((item, redirect))
                    continue
                reload = reload or is_cluster_error(result)
                if not future.done():
                    future.set_exception(result)
                continue
            self.entries += 1
            counts[stream] = counts.get(stream, 0) + 1
            if future.done():
                continue
            if confirmed:
                future.set_result(result.decode() if isinstance(result, bytes) else str(result))
            else:
                if unconfirmed is None:
                    unconfirmed = Unconfirmed(
                        f"{lane.node.name}: no replica confirmed the entry within "
                        f"{self._wait_timeout_ms} ms")
                future.set_exception(unconfirmed)
        if unconfirmed is not None:
            log.warning("%s", unconfirmed)
        if redirected:
            self._redirect(lane, redirected)
            reload = True
        if self._on_added is not None:
            for stream, n in counts.items():
                self._on_added(stream, n)
        if reload:
            await self._topology.refresh()

    def _redirect(self, lane: _Lane, redirected: list[tuple[_Item, Redirect]]) -> None:
        """Queue redirected XADDs first at the node their reply names. After a MOVED the
        stream's entries still queued here go there too, behind them, and so does the
        stream's route: nothing of the stream is then left here or in flight."""
        groups: dict[tuple[str, bool], list[_Item]] = {}
        for (stream, fields, future, tries, _), redirect in redirected:
            target = self._lane(self._topology.node_at(redirect.host, redirect.port))
            groups.setdefault((target.node.name, redirect.ask), []).append(
                (stream, fields, future, tries + 1, redirect.ask))
        for (name, ask), items in groups.items():
            target = self._lanes[name]
            if not ask and target is not lane:
                streams = {item[0] for item in items}
                keep: list[_Item] = []
                for item in lane.pending:
                    (items if item[0] in streams and not item[4] else keep).append(item)
                lane.pending[:] = keep
                for stream in streams:
                    self._route[stream] = target
            target.pending[0:0] = items
            target.wakeup.set()

    def _topology_changed(self) -> None:
        """A stream's slot is not served now: reload the slot map in the background."""
        task = asyncio.get_running_loop().create_task(self._topology.refresh())
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def _pack_xadd(stream: str, fields: Fields) -> bytes:
    """``XADD stream * field value ...`` in RESP, packed by hiredis."""
    args: list[str | bytes] = ["XADD", stream, "*"]
    for name, value in fields.items():
        args.append(name)
        args.append(value)
    packed: bytes = pack_command(tuple(args))  # type: ignore[arg-type]  # the stub wants a 1-tuple
    return packed

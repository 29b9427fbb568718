"""Blocking ``XREAD`` for asyncio followers of the ``:out`` streams (gateway, market data).

A follower makes one ``XREAD`` per engine commit at low rates, and that read
is on the path of every execution report and every market-data message.
redis-py's ``xread`` spends ~30 us of Python per call on its retry wrapper,
pool checkout, fork check and reply callbacks, and its reply reaches the
caller a task wake-up after it arrives; :class:`StreamTail` keeps its own
:class:`~redisio.resp.RespConnection`, writes the command packed by hiredis
(C) and returns the raw RESP2 reply: entries are ``(id, [name, value, ...])``
with flat field lists (read them with ``contract.streams.field_of``/``events_of``).

A tail reads streams of one group (``Topology.groups``: on a single server
any, in a cluster those of one slot) from the node the topology names for
them: the primary, or with replica reads a replica (``READONLY``). Its
:meth:`StreamTail.call` runs other commands on that same node (a snapshot
``GET`` read where the stream is read).

A read that gets no reply within ``BLOCK`` + ``timeout_margin_s`` seconds
(Redis hung, or the network dropped without a reset) raises
``redis.exceptions.TimeoutError``; a ``MOVED``/``ASK``/``CLUSTERDOWN``
reply raises :class:`~redisio.topology.TopologyError` (a ``ConnectionError``).
Any failure drops the connection and, for a lost connection, a timeout or a
redirect, reloads the slot map: the next read connects to whatever node
serves the streams then. Callers retry from their last position.

A follower off the order path (history, the REST API's books) can trade a
little staleness for far fewer wake-ups with ``min_interval_s``: after a
read that found its streams caught up (no stream filled COUNT), the next
read starts no sooner than that long after it, so what arrives meanwhile is
read, and handled, together. The first entry after a quiet spell is read
as soon as it arrives; a backlog is read without pause; :meth:`StreamTail.wake`
ends a pause early (a reader asked for what it has not read yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisio.resp import RespConnection, reply_within, time_left
from redisio.topology import Key, Node, Topology, TopologyError, is_cluster_error

Entry = tuple[bytes, list[bytes]]
"""A stream entry: its id and its flat field list ``[name, value, ...]``."""

TIMEOUT_MARGIN_S = 5.0
"""How long past its BLOCK time a read waits before calling Redis hung."""


class StreamTail:
    """One dedicated connection for ``XREAD [BLOCK]`` over the streams of one group.

    ``source`` is a :class:`~redisio.topology.Topology` (or a single-server
    redis-py client). ``replica``: read from a replica (default: the
    topology's ``replica_reads``). ``min_interval_s``: see the module's
    docstring (0: every read at once). Not safe for concurrent use: one task
    reads at a time. Cost per read: one packed write and one reply parse in
    C, plus ~5 us of Python.
    """

    def __init__(self, source: Topology | aioredis.Redis, count: int,
                 timeout_margin_s: float = TIMEOUT_MARGIN_S, *,
                 replica: bool | None = None, min_interval_s: float = 0.0) -> None:
        self._topology = source if isinstance(source, Topology) else Topology.of_client(source)
        self._replica = self._topology.replica_reads if replica is None else replica
        self._conn: RespConnection | None = None
        self._node: Node | None = None
        self._epoch = -1
        self._count = count
        self._margin_s = timeout_margin_s
        self._min_interval_s = min_interval_s
        self._next_read_at = 0.0
        """Loop time before which a blocking read waits (set by a caught-up read)."""
        self._woken = asyncio.Event()
        self.paused = False
        """True while a read waits out ``min_interval_s`` (:meth:`wake` ends it)."""

    @property
    def node(self) -> Node | None:
        """The node of the current connection (None before the first read)."""
        return self._node

    async def read(self, positions: Mapping[bytes, bytes], block_ms: int | None, *,
                   pause: bool = True) -> list[tuple[bytes, list[Entry]]]:
        """Entries after each stream's position: ``[(key, entries), ...]``, ``[]`` if none.

        ``block_ms`` None returns at once; otherwise waits up to that long for
        the first new entry. With ``min_interval_s``, a read after a caught-up
        one first pauses (``pause=False``: not this time); a pause that
        :meth:`wake` ends is followed by a read that does not block, so the
        one who woke it learns at once what there is. Raises redis-py's
        ``ConnectionError`` (including :class:`~redisio.topology.TopologyError`)
        or ``TimeoutError`` (and ``ResponseError`` for another Redis error reply).
        """
        if block_ms is not None and self._min_interval_s and pause:
            wait_s = self._next_read_at - asyncio.get_running_loop().time()
            if wait_s > 0:
                self._woken.clear()
                self.paused = True
                try:
                    await asyncio.wait_for(self._woken.wait(), wait_s)
                    block_ms = None  # woken: someone wants what is there now
                except TimeoutError:
                    pass
                finally:
                    self.paused = False
        args: list[bytes | str | int] = ["XREAD", "COUNT", self._count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args.append("STREAMS")
        args += positions.keys()
        args += positions.values()
        packed: bytes = pack_command(tuple(args))  # type: ignore[arg-type]  # stub wants a 1-tuple
        reply = await self._send(next(iter(positions)), packed, (block_ms or 0) / 1000)
        if not reply:
            return []
        # RespConnection speaks RESP2 whatever the client was configured with: a list.
        out = [(key, entries) for key, entries in reply]
        if self._min_interval_s and all(len(entries) < self._count for _key, entries in out):
            self._next_read_at = asyncio.get_running_loop().time() + self._min_interval_s
        return out

    def wake(self) -> None:
        """End the current pause between reads (if any) now: the read starts at once. O(1)."""
        self._woken.set()

    async def call(self, key: Key, *args: Any) -> Any:
        """One command about ``key`` (one of this tail's streams, or a key of its slot)
        on the tail's node and connection; the raw RESP2 reply. Raises as :meth:`read`."""
        packed: bytes = pack_command(args)
        return await self._send(key, packed, 0.0)

    async def close(self) -> None:
        """Drop the connection (the next read opens another)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _send(self, key: Key, packed: bytes, wait_s: float) -> Any:
        timeout_s = wait_s + self._margin_s
        try:
            conn = self._conn
            left_s = timeout_s
            if conn is None or conn.closed or self._epoch != self._topology.epoch:
                deadline = asyncio.get_running_loop().time() + timeout_s
                async with asyncio.timeout_at(deadline):  # one bound: connect and reply
                    conn = await self._connect(key)
                left_s = time_left(deadline)
            reply: Any = await reply_within(conn.send([packed])[0], left_s)
        except TimeoutError:
            await self._lost()
            raise RedisTimeoutError(f"no reply from Redis within {timeout_s:.1f} s") from None
        except ResponseError as exc:
            if is_cluster_error(exc):
                where = self._node.name if self._node is not None else "Redis"
                await self._lost()
                raise TopologyError(f"{where}: {exc}") from exc
            raise
        except RedisConnectionError:
            await self._lost()
            raise
        except BaseException:
            # Cancelled or failed mid-command: a BLOCK may still be pending on the
            # server and would hold up the next read; a fresh connection does not.
            await self.close()
            raise
        return reply

    async def _connect(self, key: Key) -> RespConnection:
        """The connection to ``key``'s node now: the current one if the node is the same."""
        epoch = self._topology.epoch
        node = self._topology.node_for(key, replica=self._replica)
        conn = self._conn
        if conn is None or conn.closed or node != self._node:
            await self.close()
            self._node = node
            conn = self._conn = await self._topology.connect(node)
        self._epoch = epoch
        return conn

    async def _lost(self) -> None:
        """The node failed, hung or no longer serves the streams: drop the connection and
        reload the slot map (a failover may be under way)."""
        await self.close()
        self._node = None
        await self._topology.refresh()

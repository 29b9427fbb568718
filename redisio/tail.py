"""Blocking ``XREAD`` for asyncio followers of the ``:out`` streams (gateway, market data).

A follower makes one ``XREAD`` per engine commit at low rates, and that read
is on the path of every execution report and every market-data message.
redis-py's ``xread`` spends ~30 us of Python per call on its retry wrapper,
pool checkout, fork check and reply callbacks, and its reply reaches the
caller a task wake-up after it arrives; :class:`StreamTail` keeps its own
:class:`~redisio.resp.RespConnection` (same server and settings as the
client), writes the command packed by hiredis (C) and returns the raw RESP2
reply: entries are ``(id, [name, value, ...])`` with flat field lists (read
them with ``contract.streams.field_of``/``events_of``).

A read that gets no reply within ``BLOCK`` + ``timeout_margin_s`` seconds
(Redis hung, or the network dropped without a reset) raises
``redis.exceptions.TimeoutError``; any failure drops the connection, and
the next read opens another. Callers retry from their last position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisio.resp import RespConnection

Entry = tuple[bytes, list[bytes]]
"""A stream entry: its id and its flat field list ``[name, value, ...]``."""

TIMEOUT_MARGIN_S = 5.0
"""How long past its BLOCK time a read waits before calling Redis hung."""


class StreamTail:
    """One dedicated connection for ``XREAD [BLOCK]`` over some streams.

    Not safe for concurrent use: one task reads at a time. Cost per read:
    one packed write and one reply parse in C, plus ~5 us of Python.
    """

    def __init__(self, client: aioredis.Redis, count: int,
                 timeout_margin_s: float = TIMEOUT_MARGIN_S) -> None:
        self._client = client
        self._conn: RespConnection | None = None
        self._count = count
        self._margin_s = timeout_margin_s

    async def read(self, positions: Mapping[bytes, bytes], block_ms: int | None
                   ) -> list[tuple[bytes, list[Entry]]]:
        """Entries after each stream's position: ``[(key, entries), ...]``, ``[]`` if none.

        ``block_ms`` None returns at once; otherwise waits up to that long for
        the first new entry. Raises redis-py's ``ConnectionError`` or
        ``TimeoutError`` (and ``ResponseError`` for a Redis error reply).
        """
        args: list[bytes | str | int] = ["XREAD", "COUNT", self._count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args.append("STREAMS")
        args += positions.keys()
        args += positions.values()
        packed: bytes = pack_command(tuple(args))  # type: ignore[arg-type]  # stub wants a 1-tuple
        timeout_s = (block_ms or 0) / 1000 + self._margin_s
        try:
            async with asyncio.timeout(timeout_s):
                conn = self._conn
                if conn is None or conn.closed:
                    conn = self._conn = await RespConnection.open(self._client)
                reply: Any = await conn.send([packed])[0]
        except TimeoutError:
            await self.close()
            raise RedisTimeoutError(f"no XREAD reply within {timeout_s:.1f} s") from None
        except BaseException:
            # Cancelled or failed mid-command: a BLOCK may still be pending on the
            # server and would hold up the next read; a fresh connection does not.
            await self.close()
            raise
        if not reply:
            return []
        # RespConnection speaks RESP2 whatever the client was configured with: a list.
        return [(key, entries) for key, entries in reply]

    async def close(self) -> None:
        """Drop the connection (the next read opens another)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

"""The history database as the REST service reads it: off the event loop, caught up on demand.

``store.db.Store`` is synchronous and thread-safe; every read here runs in a
worker thread (``asyncio.to_thread``) so the loop keeps serving. Closed
orders, all orders, the account's trades, public trades and candles come
from it, so they survive restarts of every process.

Read-your-writes: the database is written by ``streamex history`` and may
trail what this process's router has read. Before answering a query about
an account that placed or canceled here, :meth:`History.caught_up` waits
(bounded by :data:`CATCH_UP_S`) until the database's position in each
stream concerned has reached the last entry the router read with a report
of that account (``api.outcomes``). Cost: one position lookup per stream,
repeated every :data:`POLL_S` while behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from contract.ids import parse_id
from store.db import Store

CATCH_UP_S = 2.0
"""The longest a query waits for the history database to reach what the router read."""
POLL_S = 0.01

P = ParamSpec("P")
T = TypeVar("T")


class History:
    """Async reads of one :class:`~store.db.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, query: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``query(*args, **kwargs)`` (a method of the store) in a worker thread."""
        return await asyncio.to_thread(query, *args, **kwargs)

    async def caught_up(self, wanted: Iterable[tuple[str, bytes]],
                        timeout_s: float = CATCH_UP_S) -> bool:
        """Wait until the database's position in each ``(stream, entry id)`` is at or past
        that id; False when ``timeout_s`` passed first (the caller answers from what is
        there)."""
        behind = [(stream, parse_id(entry_id)) for stream, entry_id in wanted]
        deadline = time.monotonic() + timeout_s
        while behind:
            positions = await asyncio.to_thread(self._positions, [s for s, _ in behind])
            behind = [(s, want) for (s, want), have in zip(behind, positions, strict=True)
                      if have is None or have < want]
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    def _positions(self, streams: list[str]) -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for stream in streams:
            position = self.store.position(stream)
            out.append(None if position is None else parse_id(position[0]))
        return out

    def close(self) -> None:
        self.store.close()

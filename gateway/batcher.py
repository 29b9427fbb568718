"""XADD batching: concurrent requests reach Redis in one pipelined round trip.

Sessions call :meth:`XaddBatcher.submit` (synchronous, O(1)) and await the
returned future for the entry id. One task (:meth:`XaddBatcher.run`) drains
everything submitted so far into one non-transactional pipeline, sends it,
and resolves each future in submission order; whatever arrives meanwhile
waits for the next round trip. So a lone order costs one round trip and a
thousand concurrent ones cost a few, never one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

Fields = dict[bytes, bytes]


class XaddBatcher:
    """Per-process queue of XADDs flushed by one task as pipelines.

    ``max_batch`` caps one pipeline. ``on_added(stream, n)`` is called after
    each pipeline with how many entries went to each stream (for the backlog
    estimate). Counters ``pipelines`` and ``entries`` are for tests and stats.
    """

    def __init__(self, redis: aioredis.Redis, max_batch: int = 2048,
                 on_added: Callable[[str, int], None] | None = None) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._on_added = on_added
        self._pending: list[tuple[str, Fields, asyncio.Future[str]]] = []
        self._wakeup = asyncio.Event()
        self.pipelines = 0
        self.entries = 0

    def submit(self, stream: str, fields: Fields) -> asyncio.Future[str]:
        """Queue ``XADD stream * fields``; the future gets the entry id or the Redis error."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, fields, future))
        self._wakeup.set()
        return future

    async def run(self) -> None:
        """Flush forever (until cancelled); queued futures then fail with CancelledError."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                    await self._flush(batch)
        finally:
            for _, _, future in self._pending:
                future.cancel()
            self._pending.clear()

    async def _flush(self, batch: list[tuple[str, Fields, asyncio.Future[str]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for stream, fields, _ in batch:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        try:
            results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # connection lost, ...: none of the batch is confirmed
            log.warning("XADD pipeline of %d failed: %r", len(batch), exc)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.pipelines += 1
        counts: dict[str, int] = {}
        for (stream, _, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                if not future.done():
                    future.set_exception(result)
                continue
            self.entries += 1
            counts[stream] = counts.get(stream, 0) + 1
            if not future.done():
                future.set_result(result.decode() if isinstance(result, bytes) else str(result))
        if self._on_added is not None:
            for stream, n in counts.items():
                self._on_added(stream, n)

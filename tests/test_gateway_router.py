"""gateway.router.ExecutionRouter with coalesced reads (the REST service's), on a real Redis.

While nobody waits for an answer the router reads an idle stream at most
once per ``min_interval_s``; :meth:`caught_up` brings its views to what the
streams hold at once, and while ``urgent()`` holds every commit is read as
it lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from timing import scaled, wait_until_async

from contract.events import Report, encode_events
from contract.keys import out_stream
from contract.market import DEFAULT_MARKETS
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from gateway.orders_view import OpenOrdersView
from gateway.router import ExecutionRouter

BTC = DEFAULT_MARKETS[0]
SYMBOL = BTC.symbol


def order_id(seq: int) -> str:
    return f"1700000000000-{seq}"


async def commit(client: aioredis.Redis, seq: int) -> None:
    """One engine commit on BTC-USD's ``:out``: the ``new`` report of alice's order seq."""
    report = Report(seq, 1_700_000_000_000, "alice", order_id(seq), None, "buy", "limit",
                    "GTC", 100, 1, "new", "new", 0, 0, 0, 1, 0, None, None, None)
    await client.xadd(out_stream(SYMBOL), {OUT_EVENTS_FIELD: encode_events([report]),
                                           OUT_INPUT_FIELD: order_id(seq).encode()})


class Router:
    """A coalescing router following BTC-USD's ``:out``, and what it delivered."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.delivered: list[str] = []
        self.urgent = False
        self.view = OpenOrdersView({SYMBOL: BTC})
        self.router = ExecutionRouter(client, [BTC], self.view, self._deliver,
                                      lambda account: True, block_ms=60_000,
                                      min_interval_s=3600.0, urgent=lambda: self.urgent)

    def _deliver(self, account: str, frame: bytes) -> None:
        self.delivered.append(account)

    def open_orders(self) -> list[str]:
        return [r.order_id for _, r in self.view.open_orders("alice", SYMBOL)]


@pytest.fixture
async def router(redis_url: str) -> AsyncIterator[tuple[Router, aioredis.Redis]]:
    client = aioredis.Redis.from_url(redis_url)
    r = Router(client)
    await r.router.load()
    task = asyncio.create_task(r.router.run())
    try:
        yield r, client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await r.router.close()
        await client.aclose()


async def test_an_idle_router_coalesces_and_caught_up_reads_what_is_there_now(
        router: tuple[Router, aioredis.Redis]) -> None:
    r, client = router
    await commit(client, 1)
    await wait_until_async(lambda: r.open_orders() == [order_id(1)], scaled(5.0),
                           "the first commit after a quiet spell, read at once")
    await wait_until_async(lambda: r.router.pausing, scaled(5.0), "the router pausing")
    await commit(client, 2)
    await asyncio.sleep(scaled(0.2))
    assert r.open_orders() == [order_id(1)]  # coalescing: not read yet
    started = time.monotonic()
    await r.router.caught_up()
    assert time.monotonic() - started < scaled(2.0)  # one read, not the hour's pause
    assert r.open_orders() == [order_id(1), order_id(2)]
    # Nothing new: caught up at once, whether pausing or blocked in its read.
    await wait_until_async(lambda: r.router.pausing, scaled(5.0), "the router pausing")
    await asyncio.wait_for(r.router.caught_up(), scaled(2.0))
    assert r.open_orders() == [order_id(1), order_id(2)]


async def test_while_a_request_waits_every_commit_is_read_as_it_lands(
        router: tuple[Router, aioredis.Redis]) -> None:
    r, client = router
    await commit(client, 1)
    await wait_until_async(lambda: r.router.pausing, scaled(5.0), "the router pausing")
    r.urgent = True  # a place begins to wait: the REST service wakes the router
    r.router.wake()
    for seq in (2, 3):
        await wait_until_async(lambda: not r.router.pausing, scaled(5.0), "a blocking read")
        await commit(client, seq)
        await wait_until_async(lambda seq=seq: len(r.open_orders()) == seq, scaled(5.0),
                               f"commit {seq} read without caught_up")
    assert not r.router.pausing
    r.urgent = False  # answered: back to coalescing (the read in flight may still take 4)
    await commit(client, 4)
    await asyncio.wait_for(r.router.caught_up(), scaled(2.0))
    await wait_until_async(lambda: len(r.open_orders()) == 4, scaled(5.0), "commit 4")
    await wait_until_async(lambda: r.router.pausing, scaled(5.0), "the router pausing")

"""redisio.tail.StreamTail (and the gateway's XaddBatcher, which waits on the same
replies) against a real Redis server: reads, time-outs, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError
from timing import scaled, wait_until_async

from contract.streams import events_of, field_of
from gateway.batcher import XaddBatcher
from redisio.tail import Entry, StreamTail
from redisio.topology import Topology
from streamex.redis_server import RedisServer

A, B = b"sx:{A}:out", b"sx:{B}:out"


def plain(reply: list[tuple[bytes, list[Entry]]]) -> dict[bytes, list[tuple[bytes, list[bytes]]]]:
    """``{key: [(id, fields), ...]}``, whatever sequence types the parser used."""
    return {key: [(entry_id, list(fields)) for entry_id, fields in entries]
            for key, entries in reply}


@pytest.fixture(params=[2, 3], ids=["resp2-client", "resp3-client"])
async def client(request: pytest.FixtureRequest, redis_url: str
                 ) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url, protocol=request.param)
    try:
        yield c
    finally:
        await c.aclose()


async def test_reads_entries_after_each_position_with_flat_fields(
        client: aioredis.Redis) -> None:
    a1 = await client.xadd(A, {b"e": b"a1", b"in": b"1-1"})
    a2 = await client.xadd(A, {b"e": b"a2"})
    b1 = await client.xadd(B, {b"e": b"b1"})
    tail = StreamTail(client, count=10)
    try:
        reply = plain(await tail.read({A: a1, B: b"0-0"}, None))
        assert reply == {A: [(a2, [b"e", b"a2"])], B: [(b1, [b"e", b"b1"])]}
        assert await tail.read({A: a2, B: b1}, None) == []  # nothing new, no wait
        assert await tail.read({A: a2, B: b1}, 30) == []    # BLOCK ran out
    finally:
        await tail.close()


async def test_a_blocked_read_returns_as_soon_as_an_entry_is_added(
        client: aioredis.Redis, redis_url: str) -> None:
    last = await client.xadd(A, {b"e": b"x"})
    tail = StreamTail(client, count=10)
    writer = aioredis.Redis.from_url(redis_url)
    try:
        read = asyncio.create_task(tail.read({A: last}, 5000))
        await blocked_in_xread(writer)
        assert not read.done()
        started = time.monotonic()
        added = await writer.xadd(A, {b"e": b"y"})
        reply = await asyncio.wait_for(read, scaled(2.0))
        assert time.monotonic() - started < scaled(1.0)  # woken by the entry, not the BLOCK
        assert plain(reply) == {A: [(added, [b"e", b"y"])]}
    finally:
        await tail.close()
        await writer.aclose()


async def test_a_cancelled_read_does_not_hand_its_reply_to_the_next_one(
        client: aioredis.Redis, redis_url: str) -> None:
    first = await client.xadd(A, {b"e": b"1"})
    tail = StreamTail(client, count=10)
    writer = aioredis.Redis.from_url(redis_url)
    try:
        read = asyncio.create_task(tail.read({A: first}, 5000))
        await blocked_in_xread(writer)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        second = await writer.xadd(A, {b"e": b"2"})  # would have answered the cancelled read
        third = await writer.xadd(A, {b"e": b"3"})
        reply = await tail.read({A: second}, 1000)
        assert plain(reply) == {A: [(third, [b"e", b"3"])]}
    finally:
        await tail.close()
        await writer.aclose()


async def test_a_hung_redis_times_out_and_the_next_read_reconnects(
        client: aioredis.Redis, redis_server: RedisServer) -> None:
    last = await client.xadd(A, {b"e": b"1"})
    tail = StreamTail(client, count=10, timeout_margin_s=0.3)
    pid = redis_server.pid
    assert pid is not None
    try:
        assert await tail.read({A: b"0-0"}, None) != []  # connected
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await tail.read({A: last}, 100)
            assert 0.3 <= time.monotonic() - started < scaled(2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        added = await client.xadd(A, {b"e": b"2"})
        reply = await tail.read({A: last}, 1000)
        assert plain(reply) == {A: [(added, [b"e", b"2"])]}
    finally:
        await tail.close()


async def test_an_xadd_to_a_hung_redis_fails_in_time_and_the_next_one_reconnects(
        client: aioredis.Redis, redis_server: RedisServer) -> None:
    batcher = XaddBatcher(client, reply_timeout_s=0.3)
    task = asyncio.create_task(batcher.run())
    pid = redis_server.pid
    assert pid is not None
    try:
        first = await batcher.submit(A.decode(), {b"e": b"1"})  # connected
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):  # the batcher's, or wait_for's after 3 s
                await asyncio.wait_for(batcher.submit(A.decode(), {b"e": b"2"}), scaled(3.0))
            assert 0.3 <= time.monotonic() - started < scaled(2.0), "no time-out of its own"
            assert batcher.failures == 1
        finally:
            os.kill(pid, signal.SIGCONT)
        third = await batcher.submit(A.decode(), {b"e": b"3"})
        stored = [(i.decode(), f) for i, f in await client.xrange(A)]
        # The timed-out XADD may or may not have been applied (it was unconfirmed): the
        # first and the third are there, in order.
        assert stored[0] == (first, {b"e": b"1"}) and stored[-1] == (third, {b"e": b"3"})
        assert len(stored) in (2, 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def blocked_in_xread(client: aioredis.Redis) -> None:
    """Wait until the server has a client blocked in XREAD (the tail's read arrived)."""
    async def blocked() -> bool:
        return any(c.get("cmd") == "xread" and "b" in c.get("flags", "")
                   for c in await client.client_list())
    await wait_until_async(blocked, what="a client blocked in XREAD")


def test_fields_are_read_from_flat_lists_and_mappings() -> None:
    flat = [b"in", b"5-0", b"e", b"\x90"]
    assert field_of(flat, b"in") == b"5-0"
    assert field_of(flat, b"e") == b"\x90"
    assert field_of(flat, b"x") is None
    assert field_of({b"in": b"5-0"}, b"in") == b"5-0"
    assert events_of(flat) == [] and events_of({b"e": b"\x90"}) == []
    with pytest.raises(KeyError):
        events_of([b"in", b"5-0"])


async def test_call_runs_on_the_tails_own_connection(client: aioredis.Redis) -> None:
    """A snapshot GET is read where the stream is: the tail's node, on its connection."""
    await client.set("sx:{A}:snap", b"state")
    added = await client.xadd(A, {b"e": b"1"})
    tail = StreamTail(Topology.of_client(client), count=10)
    try:
        first = await tail.call(A, "CLIENT", "ID")
        assert await tail.call(A, "GET", "sx:{A}:snap") == b"state"
        assert plain(await tail.read({A: b"0-0"}, None)) == {A: [(added, [b"e", b"1"])]}
        assert await tail.call(A, "CLIENT", "ID") == first
        assert tail.node is not None and tail.node.name.endswith(
            f":{client.connection_pool.connection_kwargs['port']}")
    finally:
        await tail.close()


async def test_caught_up_reads_pause_so_what_arrives_meanwhile_comes_together(
        client: aioredis.Redis, redis_url: str) -> None:
    """With ``min_interval_s`` a read after a caught-up one waits out the interval (or a
    wake) and then returns everything added meanwhile in one reply."""
    last = await client.xadd(A, {b"e": b"0"})
    tail = StreamTail(client, count=10, min_interval_s=3600.0)
    writer = aioredis.Redis.from_url(redis_url)
    try:
        first = asyncio.create_task(tail.read({A: last}, 5000))
        await blocked_in_xread(writer)  # the first read after a quiet spell goes at once
        one = await writer.xadd(A, {b"e": b"1"})
        assert plain(await asyncio.wait_for(first, scaled(2.0))) == {A: [(one, [b"e", b"1"])]}
        two = await writer.xadd(A, {b"e": b"2"})
        three = await writer.xadd(A, {b"e": b"3"})
        paused = asyncio.create_task(tail.read({A: one}, 5000))
        done, _ = await asyncio.wait({paused}, timeout=scaled(0.3))
        assert not done  # entries are there, but the read waits out its interval
        tail.wake()
        reply = plain(await asyncio.wait_for(paused, scaled(2.0)))
        assert reply == {A: [(two, [b"e", b"2"]), (three, [b"e", b"3"])]}
    finally:
        await tail.close()
        await writer.aclose()


async def test_a_read_that_filled_count_is_followed_without_pause(
        client: aioredis.Redis) -> None:
    """A backlog is read at full speed: only a read short of COUNT starts a pause."""
    ids = [await client.xadd(A, {b"e": str(i).encode()}) for i in range(5)]
    tail = StreamTail(client, count=2, min_interval_s=3600.0)
    try:
        got: list[bytes] = []
        position = b"0-0"
        for _ in range(3):  # 2 + 2 + 1: the last one is short, nothing after it waits
            reply = await asyncio.wait_for(tail.read({A: position}, 5000), scaled(2.0))
            got += [entry_id for entry_id, _fields in reply[0][1]]
            position = got[-1]
        assert got == ids
    finally:
        await tail.close()


async def test_a_woken_pause_reads_what_is_there_without_blocking(
        client: aioredis.Redis) -> None:
    """Whoever wakes a pausing tail wants what the streams hold now: the read after the
    pause does not BLOCK, even when nothing new came; ``pause=False`` skips the pause."""
    last = await client.xadd(A, {b"e": b"0"})
    tail = StreamTail(client, count=10, min_interval_s=3600.0)
    try:
        assert plain(await tail.read({A: b"0-0"}, None)) == {
            A: [(last, [b"e", b"0"])]}  # caught up: the next read pauses
        paused = asyncio.create_task(tail.read({A: last}, 60_000))
        await wait_until_async(lambda: tail.paused)
        started = time.monotonic()
        tail.wake()
        assert await asyncio.wait_for(paused, scaled(2.0)) == []  # not the 60 s BLOCK
        assert not tail.paused and time.monotonic() - started < scaled(2.0)
        # Caught up again, but told not to pause: a blocking read that an entry ends.
        unpaused = asyncio.create_task(tail.read({A: last}, 60_000, pause=False))
        await asyncio.sleep(0)
        assert not tail.paused
        new = await client.xadd(A, {b"e": b"1"})
        assert plain(await asyncio.wait_for(unpaused, scaled(2.0))) == {
            A: [(new, [b"e", b"1"])]}
    finally:
        await tail.close()

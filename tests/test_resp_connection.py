"""redisio.resp.RespConnection against a real Redis, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import uvloop
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from redisio.resp import RespConnection, connection_kwargs
from streamex.redis_server import RedisServer, free_port

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine on the parametrized event loop (the services use uvloop)."""
    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            return r.run(coro)
    return runner


def cmd(*args: str | int) -> bytes:
    packed: bytes = pack_command(args)  # type: ignore[arg-type]
    return packed


def test_pipelined_replies_reach_their_own_futures_in_order(
        run: Callable[[Coroutine[Any, Any, Any]], Any], redis_url: str) -> None:
    async def scenario() -> list[Any]:
        client = aioredis.Redis.from_url(redis_url)
        conn = await RespConnection.open(client)
        try:
            futures = conn.send([cmd("SET", "k", "v"), cmd("INCR", "k"), cmd("GET", "k"),
                                 cmd("XADD", "s", "*", "f", "1"), cmd("XLEN", "s")])
            results = []
            for future in futures:
                try:
                    results.append(await future)
                except ResponseError as exc:  # only INCR of a non-number fails
                    results.append(type(exc))
            return results
        finally:
            conn.close()
            await client.aclose()

    ok, incr, value, entry_id, length = run(scenario())
    assert (ok, incr, value, length) == (b"OK", ResponseError, b"v", 1)
    assert isinstance(entry_id, bytes) and b"-" in entry_id


def test_logs_in_and_selects_the_clients_database(
        run: Callable[[Coroutine[Any, Any, Any]], Any], redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/3"

    async def scenario() -> None:
        client = aioredis.Redis.from_url(url)
        conn = await RespConnection.open(client)
        try:
            assert await conn.send([cmd("SET", "in-db-3", "yes")])[0] == b"OK"
        finally:
            conn.close()
            await client.aclose()
        wrong = aioredis.Redis.from_url(f"redis://:nope@127.0.0.1:{redis_server.port}/0")
        try:
            with pytest.raises(ResponseError):
                await RespConnection.open(wrong)
        finally:
            await wrong.aclose()

    run(scenario())
    with redis.Redis.from_url(url) as check:
        assert check.get("in-db-3") == b"yes"
        assert check.execute_command("SELECT", 0) and check.get("in-db-3") is None


def test_unix_socket_url(run: Callable[[Coroutine[Any, Any, Any]], Any],
                         redis_server: RedisServer) -> None:
    assert redis_server.unix_url is not None

    async def scenario() -> Any:
        client = aioredis.Redis.from_url(redis_server.unix_url or "")
        conn = await RespConnection.open(client)
        try:
            return await conn.send([cmd("PING")])[0]
        finally:
            conn.close()
            await client.aclose()

    assert run(scenario()) == b"PONG"


def test_a_cancelled_futures_reply_is_dropped_and_the_next_stay_matched(
        run: Callable[[Coroutine[Any, Any, Any]], Any], redis_url: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        client = aioredis.Redis.from_url(redis_url)
        conn = await RespConnection.open(client)
        try:
            slow, = conn.send([cmd("BLPOP", "nothing", "0.2")])
            slow.cancel()
            after = conn.send([cmd("ECHO", "mine")])[0]
            return await asyncio.wait_for(after, 5), conn.closed
        finally:
            conn.close()
            await client.aclose()

    assert run(scenario()) == (b"mine", False)


def test_a_lost_connection_fails_every_waiting_future(
        run: Callable[[Coroutine[Any, Any, Any]], Any], redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        conn = await RespConnection.open(client)
        try:
            name = await conn.send([cmd("CLIENT", "ID")])[0]
            waiting = conn.send([cmd("BLPOP", "nothing", "0")])[0]
            await client.execute_command("CLIENT", "KILL", "ID", name)
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(waiting, 5)
            assert conn.closed
            with pytest.raises(RedisConnectionError):
                conn.send([cmd("PING")])
        finally:
            conn.close()
            await client.aclose()

    run(scenario())


def test_nothing_listening_is_a_connection_error(
        run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(RedisConnectionError):
                await RespConnection.open(client)
        finally:
            await client.aclose()

    run(scenario())


def test_connects_with_plain_connection_settings(
        run: Callable[[Coroutine[Any, Any, Any]], Any], redis_server: RedisServer) -> None:
    """``connect(kwargs)`` (a cluster node's settings) logs in like ``open(client)``;
    ``READONLY`` is sent when asked (a server without cluster support refuses it)."""
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.config_set("requirepass", "s3cret")
    settings = {"host": "127.0.0.1", "port": redis_server.port, "password": "s3cret",
                "ssl": False}

    async def scenario() -> None:
        conn = await RespConnection.connect(settings)
        try:
            assert await conn.send([cmd("PING")])[0] == b"PONG"
        finally:
            conn.close()
        client = aioredis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{redis_server.port}/2")
        try:
            assert connection_kwargs(client)["db"] == 2
            assert connection_kwargs(client)["ssl"] is False
        finally:
            await client.aclose()
        with pytest.raises(ResponseError, match="cluster support disabled"):
            await RespConnection.connect(settings, readonly=True)

    run(scenario())

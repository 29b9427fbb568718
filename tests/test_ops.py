"""ops/: the metrics and health endpoints over real sockets, and service registration in a
real Redis."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from contract.keys import service_key
from ops.health import Health
from ops.http import MetricsServer, websocket_hook
from ops.metrics import process_registry
from ops.registry import (
    TTL_MS,
    keep_registered,
    new_registration,
    read_registrations,
    refresh,
    unregister,
)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_server_serves_the_registry_and_the_health_checks() -> None:
    registry = process_registry()
    orders = Counter("streamex_test_orders", "Orders.", ["stage"], registry=registry)
    health = Health("test")
    problem: list[str | None] = ["catching up: 3 entries behind"]
    health.add_check("caught_up", lambda: problem[0])
    server = MetricsServer(registry, health, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        orders.labels("BTC-USD").inc()
        status, ctype, body = _get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert _samples(body, "streamex_test_orders_total") == {(("stage", "BTC-USD"),): 1.0}
        assert "process_cpu_seconds_total" in body  # the process collector is there
        orders.labels("BTC-USD").inc(2)
        assert _samples(_get(base + "/metrics")[2], "streamex_test_orders_total") == {
            (("stage", "BTC-USD"),): 3.0}
        assert _get(base + "/healthz")[:1] == (200,)
        status, _, body = _get(base + "/readyz")
        assert status == 503 and "caught_up: catching up: 3 entries behind" in body
        problem[0] = None
        assert _get(base + "/readyz") == (200, "text/plain; charset=utf-8", "ready\n")
        assert _get(base + "/nothing")[0] == 404
    finally:
        server.close()


def test_a_failing_check_makes_the_service_not_ready_with_its_error() -> None:
    health = Health("test")

    def broken() -> str | None:
        raise RuntimeError("boom")

    health.add_check("broken", broken)
    assert health.failures() == {"broken": "check failed: RuntimeError('boom')"}


async def test_websocket_hook_answers_http_and_lets_handshakes_through() -> None:
    registry = process_registry()
    health = Health("test")

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0,
                     process_request=websocket_hook(registry, health)) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        status, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "python_info" in body
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz"))[0] == 200
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"


def test_registration_is_a_ttl_key_listed_until_removed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        reg = new_registration("engine", "e1", stages=["BTC-USD"], owned=["BTC-USD"],
                               urls={"metrics": "http://127.0.0.1:1/metrics"})
        refresh(client, reg)
        ttl = client.pttl(service_key("engine", "e1"))
        assert 0 < ttl <= TTL_MS
        refresh(client, new_registration("gateway", "g1"))
        got = read_registrations(client)
        assert [(r.service, r.instance) for r in got] == [("engine", "e1"), ("gateway", "g1")]
        assert got[0].owned == ["BTC-USD"] and got[0].urls["metrics"].endswith("/metrics")
        unregister(client, reg)
        assert [r.instance for r in read_registrations(client)] == ["g1"]
    finally:
        client.close()


@pytest.mark.asyncio
async def test_keep_registered_refreshes_and_removes_its_key_when_cancelled(
        redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    sync = redis.Redis.from_url(redis_url)
    try:
        task = asyncio.create_task(keep_registered(client, new_registration("api", "a1")))
        for _ in range(200):
            if sync.exists(service_key("api", "a1")):
                break
            await asyncio.sleep(0.01)
        assert [r.service for r in read_registrations(sync)] == ["api"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert read_registrations(sync) == []
    finally:
        await client.aclose()
        sync.close()

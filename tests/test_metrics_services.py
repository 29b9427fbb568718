"""Metrics and health of the websocket gateway, market data and the REST API.

Real Redis, a real engine, the services in process (gateway, market data) or as
a process (REST): each answers /metrics, /healthz and /readyz, and the counters
follow what the clients did.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from gateway_helpers import (
    ALICE,
    EngineGroup,
    Process,
    RawClient,
    engine_process,
    error_code,
    logged_on,
    make_config,
    next_report,
    running_gateway,
    start_gateway_process,
    wait_engine_ready,
    write_config,
)
from marketdata_helpers import Flow
from msgspec.structs import replace
from prometheus_client.parser import text_string_to_metric_families
from timing import TIMEOUT_S
from websockets.asyncio.client import ClientConnection, connect

from api.service import ApiService
from contract.market import DEFAULT_MARKETS
from contract.settings import Config, MetricsConfig
from gateway.server import Gateway
from marketdata.feed import MarketFeed
from marketdata.metrics import MarketDataCollector
from marketdata.server import FeedServer
from marketdata.service import MarketDataService
from ops.health import Health
from ops.metrics import process_registry
from ops.registry import read_registrations


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, url)


async def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url``'s exposition: (name, sorted labels) -> value."""
    status, text = await get(url)
    assert status == 200
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(check: Any, timeout_s: float = TIMEOUT_S) -> None:
    """Wait until ``await check()`` is true."""
    for _ in range(int(timeout_s / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {timeout_s} s")


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def engine(tmp_path: Path, config: Config, redis_url: str) -> Iterator[EngineGroup]:
    process = engine_process(write_config(tmp_path, config), redis_url,
                             tmp_path / "engine.log").start()
    yield process
    process.stop()


@pytest.fixture
async def gateway(config: Config, redis_url: str, engine: EngineGroup
                  ) -> AsyncIterator[tuple[Gateway, str]]:
    await wait_engine_ready(redis_url)
    async with running_gateway(config, redis_url) as running:
        yield running


async def md_request(ws: ClientConnection, method: str, params: dict[str, Any]
                     ) -> dict[str, Any]:
    """Send a request and return its reply (pushes before it are skipped)."""
    await ws.send(json.dumps({"id": 7, "method": method, "params": params}))
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            msg: dict[str, Any] = json.loads(await ws.recv())
            if msg.get("id") == 7:
                return msg


def http_of(ws_url: str) -> str:
    return "http://" + ws_url.removeprefix("ws://").rstrip("/")


# -- gateway -------------------------------------------------------------------------------


async def test_gateway_counts_an_order_and_its_latency(gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    base = http_of(url)
    assert gw.metrics_url == f"{base}/metrics"
    assert await get(f"{base}/healthz") == (200, "ok\n")
    assert await get(f"{base}/readyz") == (200, "ready\n")
    alice = await logged_on(url, ALICE)
    before = await samples(f"{base}/metrics")
    assert value(before, "streamex_gateway_connections") == 1
    placed = await alice.place("BTC-USD", "sell", "limit", "1", "100.00")
    new = await next_report(alice)
    assert (new.exec_type, new.order_id) == ("new", placed.order_id)
    after = await samples(f"{base}/metrics")
    ok = {"method": "order.place", "code": "ok"}
    assert (value(after, "streamex_gateway_requests_total", **ok)
            - value(before, "streamex_gateway_requests_total", **ok)) == 1
    assert (value(after, "streamex_gateway_order_latency_seconds_count")
            - value(before, "streamex_gateway_order_latency_seconds_count")) == 1
    assert value(after, "streamex_gateway_order_latency_seconds_sum") > 0
    assert (value(after, "streamex_gateway_messages_sent_total")
            >= value(before, "streamex_gateway_messages_sent_total") + 2)
    assert value(after, "streamex_gateway_requests_total", method="logon", code="ok") == 1
    await alice.close()

    async def closed() -> bool:
        got = await samples(f"{base}/metrics")
        return value(got, "streamex_gateway_connections") == 0

    await until(closed)


async def test_gateway_counts_refusals_by_code(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    base = http_of(url)
    raw = await RawClient.open(url)
    reply = await raw.call({"id": 1, "method": "order.place", "params": {}})
    place_code = reply["error"]["code"]
    reply = await raw.call({"id": 2, "method": "no.such.method"})
    code = reply["error"]["code"]
    reply = await raw.call("not json")
    bad = reply["error"]["code"]
    got = await samples(f"{base}/metrics")
    assert value(got, "streamex_gateway_requests_total", method="order.place",
                 code=place_code) == 1
    assert value(got, "streamex_gateway_requests_total", method="unknown", code=code) >= 1
    assert value(got, "streamex_gateway_requests_total", method="unknown", code=bad) >= 1
    for scope in ("connection", "account"):
        assert value(got, "streamex_gateway_rate_limited_total", scope=scope) == 0
    await raw.close()


async def test_gateway_counts_rate_limited_requests_by_the_limit_that_refused(
        redis_url: str, engine: EngineGroup) -> None:
    """The account's bucket refuses the third place, the connection's the sixth request."""
    config = make_config(connection_rate=0.01, connection_burst=5, account_rate=0.01,
                         account_burst=2)
    await wait_engine_ready(redis_url)
    async with running_gateway(config, redis_url) as (_, url):
        raw = await RawClient.open(url)
        assert "result" in await raw.logon(ALICE)
        place = {"method": "order.place", "params": {
            "symbol": "BTC-USD", "side": "sell", "type": "limit", "qty": "0.0001",
            "price": "90000.00"}}
        codes = []
        for i in range(3):
            reply = await raw.call({"id": i, **place})
            codes.append(reply["error"]["code"] if "error" in reply else "ok")
        assert codes == ["ok", "ok", "RATE_LIMITED"]
        assert "result" in await raw.call({"id": 3, "method": "ping"})
        assert error_code(await raw.call({"id": 4, "method": "ping"})) == "RATE_LIMITED"
        got = await samples(f"{http_of(url)}/metrics")
        assert value(got, "streamex_gateway_rate_limited_total", scope="account") == 1
        assert value(got, "streamex_gateway_rate_limited_total", scope="connection") == 1
        assert value(got, "streamex_gateway_requests_total", method="order.place",
                     code="RATE_LIMITED") == 1
        await raw.close()


async def test_gateway_without_metrics_still_answers_health(
        config: Config, redis_url: str, engine: EngineGroup) -> None:
    config = replace(config, metrics=MetricsConfig(enabled=False))
    await wait_engine_ready(redis_url)
    async with running_gateway(config, redis_url) as (gw, url):
        base = http_of(url)
        assert gw.stats is None and gw.metrics_url is None
        assert (await get(f"{base}/readyz"))[0] == 200
        assert (await get(f"{base}/healthz"))[0] == 200
        assert (await get(f"{base}/metrics"))[0] != 200
        alice = await logged_on(url, ALICE)
        await alice.place("BTC-USD", "sell", "limit", "1", "100.00")
        await next_report(alice)
        await alice.close()


# -- market data -----------------------------------------------------------------------------


async def test_marketdata_subscribers_follow_subscriptions(
        config: Config, redis_url: str, engine: EngineGroup) -> None:
    await wait_engine_ready(redis_url)
    service = MarketDataService(config.markets, redis_url)
    try:
        await service.start("127.0.0.1", 0)
        base = f"http://127.0.0.1:{service.port}"
        assert service.metrics_url == f"{base}/metrics"
        assert await get(f"{base}/readyz") == (200, "ready\n")
        assert await get(f"{base}/healthz") == (200, "ok\n")
        assert (await get(f"{base}/"))[0] == 200  # the web page still answers
        book = {"channel": "book", "symbol": "BTC-USD", "depth": 10}
        async with connect(f"ws://127.0.0.1:{service.port}/") as ws:
            assert "result" in await md_request(ws, "subscribe", book)
            assert "result" in await md_request(ws, "subscribe",
                                                {"channel": "trades", "symbol": "BTC-USD"})
            got = await samples(f"{base}/metrics")
            assert value(got, "streamex_marketdata_connections") == 1
            assert value(got, "streamex_marketdata_subscribers", channel="book") == 1
            assert value(got, "streamex_marketdata_subscribers", channel="trades") == 1
            assert value(got, "streamex_marketdata_subscribers", channel="ticker") == 0
            assert value(got, "streamex_marketdata_requests_total", method="subscribe",
                         code="ok") == 2
            assert value(got, "streamex_marketdata_messages_sent_total") >= 4
            assert "result" in await md_request(ws, "unsubscribe", book)
            bad = await md_request(ws, "subscribe", {"channel": "book", "symbol": "NOPE"})
            code = bad["error"]["code"]
            got = await samples(f"{base}/metrics")
            assert value(got, "streamex_marketdata_subscribers", channel="book") == 0
            assert value(got, "streamex_marketdata_subscribers", channel="trades") == 1
            assert value(got, "streamex_marketdata_requests_total", method="unsubscribe",
                         code="ok") == 1
            assert value(got, "streamex_marketdata_requests_total", method="subscribe",
                         code=code) == 1
            assert value(got, "streamex_marketdata_slow_snapshots_total") == 0
            assert value(got, "streamex_marketdata_slow_closes_total") == 0

        async def gone() -> bool:
            got = await samples(f"{base}/metrics")
            return (value(got, "streamex_marketdata_connections") == 0
                    and value(got, "streamex_marketdata_subscribers", channel="trades") == 0)

        await until(gone)
    finally:
        await service.close()


async def test_marketdata_not_ready_before_start(config: Config, redis_url: str) -> None:
    service = MarketDataService(config.markets, redis_url, metrics=False)
    assert service.health.failures() == {"readers": "starting: connecting to Redis"}
    assert service.server.registry is None


# -- REST API --------------------------------------------------------------------------------


async def test_api_counts_requests_by_endpoint_and_status(
        config: Config, redis_url: str, engine: EngineGroup) -> None:
    await wait_engine_ready(redis_url)
    async with ApiService(config, redis_url) as service:
        host, port = await service.start("127.0.0.1", 0)
        base = f"http://{host}:{port}"
        assert service.metrics_url == f"{base}/metrics"
        assert await get(f"{base}/readyz") == (200, "ready\n")
        assert await get(f"{base}/healthz") == (200, "ok\n")
        assert (await get(f"{base}/api/v3/ping"))[0] == 200
        assert (await get(f"{base}/api/v3/ping"))[0] == 200
        assert (await get(f"{base}/api/v3/depth"))[0] == 400  # no symbol
        assert (await get(f"{base}/no/such/path"))[0] == 404
        got = await samples(f"{base}/metrics")
        assert value(got, "streamex_api_requests_total", method="GET",
                     endpoint="/api/v3/ping", status="200") == 2
        assert value(got, "streamex_api_requests_total", method="GET",
                     endpoint="/api/v3/depth", status="400") == 1
        assert value(got, "streamex_api_requests_total", method="GET", endpoint="other",
                     status="404") == 1
        assert value(got, "streamex_api_request_seconds_count", endpoint="/api/v3/ping") == 2
        assert not any(dict(labels).get("endpoint") in ("/metrics", "/readyz", "/healthz")
                       for name, labels in got if name.startswith("streamex_api_"))


async def test_api_without_metrics_answers_health_only(
        config: Config, redis_url: str, engine: EngineGroup) -> None:
    config = replace(config, metrics=MetricsConfig(enabled=False))
    await wait_engine_ready(redis_url)
    async with ApiService(config, redis_url) as service:
        assert set(service.health.failures()) == {"started", "gateway"}  # not started
        host, port = await service.start("127.0.0.1", 0)
        base = f"http://{host}:{port}"
        assert service.metrics_url is None
        assert await get(f"{base}/readyz") == (200, "ready\n")
        assert (await get(f"{base}/metrics"))[0] == 404


# -- Redis lost: every service counts its reconnects ----------------------------------------


async def test_dropped_redis_connections_are_counted_as_reconnects(
        config: Config, redis_url: str, gateway: tuple[Gateway, str]) -> None:
    """Redis drops every client: gateway, market data and REST each retry their reads on
    a new connection, count it, and are ready again."""
    gw, url = gateway
    md = MarketDataService(config.markets, redis_url)
    async with ApiService(config, redis_url) as api:
        try:
            await md.start("127.0.0.1", 0)
            host, port = await api.start("127.0.0.1", 0)
            bases = {"gateway": http_of(url), "marketdata": f"http://127.0.0.1:{md.port}",
                     "api": f"http://{host}:{port}"}
            for name, base in bases.items():
                await until(lambda base=base: _ready(base))
                got = await samples(f"{base}/metrics")
                assert value(got, f"streamex_{name}_reconnects_total") == 0, name
            admin = redis.Redis.from_url(redis_url)
            try:
                assert admin.client_kill_filter(_type="normal", skipme=True) >= 3
            finally:
                admin.close()
            for name, base in bases.items():
                async def reconnected(name: str = name, base: str = base) -> bool:
                    got = await samples(f"{base}/metrics")
                    return value(got, f"streamex_{name}_reconnects_total") >= 1
                await until(reconnected)
                await until(lambda base=base: _ready(base))
        finally:
            await md.close()


async def _ready(base: str) -> bool:
    return (await get(f"{base}/readyz"))[0] == 200


# -- processes: the metrics line and the registration ---------------------------------------


async def test_service_processes_log_metrics_and_register(
        tmp_path: Path, config: Config, redis_url: str, engine: EngineGroup) -> None:
    await wait_engine_ready(redis_url)
    path = write_config(tmp_path, config)
    gateway, ws_url = await start_gateway_process(path, redis_url, tmp_path / "gateway.log")
    md = Process(["marketdata", "--config", str(path), "--redis-url", redis_url, "--port",
                  "0"], tmp_path / "marketdata.log").start()
    api = Process(["api", "--config", str(path), "--redis-url", redis_url, "--port", "0"],
                  tmp_path / "api.log").start()
    client = redis.Redis.from_url(redis_url)
    try:
        md_url = await asyncio.to_thread(md.wait_listening, "marketdata")
        urls = {"gateway": http_of(ws_url), "marketdata": http_of(md_url)}

        async def logged() -> bool:
            return all(f"event=metrics service={s} url={u}/metrics" in p.log()
                       for s, u, p in (("gateway", urls["gateway"], gateway),
                                       ("marketdata", urls["marketdata"], md))) \
                and "event=metrics service=api url=http://" in api.log()

        await until(logged)
        api_url = api.log().split("event=metrics service=api url=", 1)[1].split()[0]
        urls["api"] = api_url.removesuffix("/metrics")
        for service, base in urls.items():
            assert await get(f"{base}/readyz") == (200, "ready\n"), service
            assert "streamex_" + service + "_" in (await get(f"{base}/metrics"))[1]

        async def registered() -> bool:
            regs = await asyncio.to_thread(read_registrations, client)
            got = {r.service: r.urls.get("metrics") for r in regs}
            return all(got.get(s) == f"{u}/metrics" for s, u in urls.items())

        await until(registered)
    finally:
        for process in (api, md, gateway):
            process.stop()
    try:
        regs = read_registrations(client)
    finally:
        client.close()
    assert not [r for r in regs if r.service in urls], regs  # deleted at a clean stop


async def test_marketdata_counts_a_slow_consumer_resync() -> None:
    """A subscriber that stops reading overflows its queue: the resync is counted."""
    feeds = {m.symbol: MarketFeed(m) for m in DEFAULT_MARKETS}
    server = FeedServer(DEFAULT_MARKETS, feeds, queue_limit=20, write_limit=1024,
                        sndbuf=4096)
    server.health = Health("marketdata")
    server.registry = process_registry()
    server.registry.register(MarketDataCollector(server, lambda: 0))
    server.count_requests = True
    await server.start("127.0.0.1", 0)
    flow = Flow(DEFAULT_MARKETS[0], 3000, seed=12)
    feed = feeds[DEFAULT_MARKETS[0].symbol]
    position = 0

    def publish(commands: int) -> None:
        nonlocal position
        stop = min(position + commands, len(flow.events))
        for i in range(position, stop, 5):
            batch = feed.apply([e for evs in flow.events[i:min(i + 5, stop)] for e in evs])
            if not batch.empty:
                server.publish(feed, batch)
        position = stop

    base = f"http://127.0.0.1:{server.port}"
    try:
        publish(500)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        async with connect(f"ws://127.0.0.1:{server.port}/", sock=sock, max_queue=1) as slow:
            assert "result" in await md_request(
                slow, "subscribe", {"channel": "book", "symbol": "BTC-USD", "depth": 500})
            slow.transport.pause_reading()
            for _ in range(100):
                publish(25)
                await asyncio.sleep(0)
                if server.resyncs or server.slow_closes:
                    break
            got = await samples(f"{base}/metrics")
            assert server.resyncs + server.slow_closes >= 1
            assert value(got, "streamex_marketdata_slow_snapshots_total") == server.resyncs
            assert value(got, "streamex_marketdata_slow_closes_total") == server.slow_closes
            slow.transport.resume_reading()
    finally:
        await server.close()

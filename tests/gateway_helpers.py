"""Helpers for the gateway tests: configs, real engine/gateway processes, ws clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from msgspec.structs import replace
from streamex_process import StreamexProcess
from timing import TIMEOUT_S
from websockets.asyncio.client import ClientConnection, connect

from contract.keys import in_stream, lease_key
from contract.risk import ToMarket, decode_risk_command, encode_risk_command, risk_keys, risk_tag
from contract.settings import Account, Config, EngineConfig, LimitsConfig, RiskConfig
from contract.streams import IN_FIELD
from gateway.server import Gateway
from streamex.client import ExecutionReport, OrderClient
from streamex.config import dump_config, load_config
from streamex.risk_cmd import initial_deposits

REPO = Path(__file__).resolve().parent.parent

FUNDS = {"USD": "100000000", "BTC": "10000", "ETH": "100000"}
"""What each test account starts with (the risk stage is on by default)."""
ALICE = Account("alice", "alice-key", "alice-secret-0123456789", balances=FUNDS)
BOB = Account("bob", "bob-key", "bob-secret-0123456789", balances=FUNDS)
CAROL = Account("carol", "carol-key", "carol-secret-0123456789", balances=FUNDS)
ACCOUNTS = (ALICE, BOB, CAROL)


RISK_ENABLED = os.environ.get("STREAMEX_TEST_RISK", "on") != "off"
"""``STREAMEX_TEST_RISK=off`` runs the order-entry tests with ``[risk] enabled = false``
(the v1 pipeline: orders straight to the markets, no balances); default on."""
RISK_SHARDS = 1 if RISK_ENABLED else 0
"""Risk shards the helpers' defaults wait for and count."""


def make_config(engine: EngineConfig | None = None, *, risk: bool | None = None,
                **limits: Any) -> Config:
    """Default markets, the three test accounts, ``[limits]`` overrides, an ``[engine]``;
    the risk stage on if ``risk``, by default unless ``STREAMEX_TEST_RISK=off``."""
    enabled = RISK_ENABLED if risk is None else risk
    return Config(accounts=ACCOUNTS, limits=replace(LimitsConfig(), **limits),
                  engine=engine or EngineConfig(), risk=RiskConfig(enabled=enabled))


def write_config(directory: Path, config: Config) -> Path:
    path = directory / "streamex.toml"
    path.write_text(dump_config(config))
    return path


class Process(StreamexProcess):
    """A ``python -m streamex ...`` child process with its output in ``log_path``."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        super().__init__(args, log_path, timeout_s=TIMEOUT_S)


class EngineGroup:
    """The engines behind a gateway: ``streamex engine`` and, when the config's risk stage
    is on, ``streamex risk`` (both logs in ``log_path``'s directory); one process to tests."""

    def __init__(self, config_path: Path, redis_url: str, log_path: Path) -> None:
        self.processes = [Process(["engine", "--config", str(config_path), "--redis-url",
                                   redis_url, "--consumer", "engine-test"], log_path)]
        if load_config(config_path).risk.enabled:
            risk_log = log_path.with_name(log_path.stem + "-risk" + log_path.suffix)
            self.processes.append(Process(["risk", "--config", str(config_path),
                                           "--redis-url", redis_url, "--consumer",
                                           "risk-test"], risk_log))

    def start(self) -> EngineGroup:
        for p in self.processes:
            p.start()
        return self

    def running(self) -> bool:
        return all(p.running() for p in self.processes)

    def stop(self, timeout_s: float | None = None) -> int | None:
        codes = [p.stop(timeout_s) for p in reversed(self.processes)]
        return next((c for c in codes if c), codes[-1])

    def kill(self) -> None:
        for p in self.processes:
            p.kill()

    def log(self) -> str:
        return "".join(p.log() for p in self.processes)


def engine_process(config_path: Path, redis_url: str, log_path: Path) -> EngineGroup:
    return EngineGroup(config_path, redis_url, log_path)


async def start_gateway_process(config_path: Path, redis_url: str, log_path: Path
                                ) -> tuple[Process, str]:
    """Start ``streamex gateway --port 0`` and return it with its ws:// URL once it listens."""
    process = Process(["gateway", "--config", str(config_path), "--redis-url", redis_url,
                       "--port", "0"], log_path).start()
    try:
        url = await asyncio.to_thread(process.wait_listening, "gateway")
    except AssertionError:
        process.kill()
        raise
    return process, url


async def wait_engine_ready(redis_url: str, symbols: Iterable[str] = ("BTC-USD", "ETH-USD"),
                            timeout_s: float = TIMEOUT_S, risk_shards: int = RISK_SHARDS) -> None:
    """Wait until an engine holds the lease of every market and risk shard (0: none), and
    the risk shards applied what they had (the accounts' initial deposits)."""
    client = aioredis.Redis.from_url(redis_url)
    tags = [*symbols, *(risk_tag(k) for k in range(risk_shards))]
    try:
        for _ in range(int(timeout_s / 0.02)):
            if all([await client.exists(lease_key(t)) for t in tags]) \
                    and all([await _caught_up(client, k) for k in range(risk_shards)]):
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise AssertionError(f"no engine took the markets within {timeout_s} s")


async def orders_entered(redis_url: str, symbol: str, risk_shards: int = RISK_SHARDS) -> int:
    """Order commands for ``symbol`` in Redis: its ``:in`` plus the risk shards' ``ToMarket``
    entries (before any risk engine forwards them; after, each would count twice)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        count: int = await client.xlen(in_stream(symbol))
        for k in range(risk_shards):
            for _, fields in await client.xrange(risk_keys(k).input):
                try:
                    cmd = decode_risk_command(fields[IN_FIELD])
                except (msgspec.DecodeError, KeyError):
                    continue
                count += isinstance(cmd, ToMarket) and cmd.symbol == symbol
        return count
    finally:
        await client.aclose()


async def fund_accounts(redis_url: str, config: Config) -> None:
    """XADD the accounts' initial deposits, as ``streamex risk`` does at start (same refs:
    applied once), so orders sent before a risk engine runs find the money there."""
    if not config.risk.enabled:
        return
    client = aioredis.Redis.from_url(redis_url)
    try:
        for k in range(config.risk.shards):
            for deposit in initial_deposits(config, k):
                await client.xadd(risk_keys(k).input, {IN_FIELD: encode_risk_command(deposit)})
    finally:
        await client.aclose()


async def _caught_up(client: aioredis.Redis, shard: int) -> bool:
    keys = risk_keys(shard)
    last = await client.xrevrange(keys.input, count=1)
    return not last or await client.get(keys.applied) == last[0][0]


@contextlib.asynccontextmanager
async def running_gateway(config: Config, redis_url: str, **options: Any
                          ) -> AsyncIterator[tuple[Gateway, str]]:
    """An in-process gateway on a free loopback port; yields it and its ws:// URL."""
    if config.risk.enabled:
        await fund_accounts(redis_url, config)
    async with Gateway(config, redis_url, **options) as gateway:
        host, port = await gateway.start("127.0.0.1", 0)
        yield gateway, f"ws://{host}:{port}/"


async def logged_on(url: str, account: Account, cancel_on_disconnect: bool = False
                    ) -> OrderClient:
    client = await OrderClient.connect(url)
    await client.logon(account.api_key, account.secret, cancel_on_disconnect)
    return client


async def next_report(client: OrderClient, timeout_s: float = TIMEOUT_S) -> ExecutionReport:
    async with asyncio.timeout(timeout_s):
        return await client.next_execution()


async def reports_until(client: OrderClient, done: Callable[[list[ExecutionReport]], bool],
                        timeout_s: float = TIMEOUT_S) -> list[ExecutionReport]:
    """Collect execution reports until ``done(collected)``; fails after ``timeout_s``."""
    collected: list[ExecutionReport] = []
    async with asyncio.timeout(timeout_s):
        while not done(collected):
            collected.append(await client.next_execution())
    return collected


async def no_report(client: OrderClient, within_s: float = 0.3) -> None:
    """Assert no execution report arrives within ``within_s``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            report = await client.next_execution()
            raise AssertionError(f"unexpected report {report}")


class RawClient:
    """A bare websocket for malformed input: send any frame, read JSON frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> RawClient:
        return cls(await connect(url, max_size=2**24, compression=None))

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout_s: float = TIMEOUT_S) -> Any:
        async with asyncio.timeout(timeout_s):
            return json.loads(await self.ws.recv())

    async def call(self, frame: str | bytes | dict[str, Any]) -> Any:
        """Send one frame and return the next frame that is not a push."""
        await self.send(json.dumps(frame) if isinstance(frame, dict) else frame)
        while True:
            message = await self.recv()
            if "channel" not in message:
                return message

    async def logon(self, account: Account, request_id: int | str = "logon",
                    cancel_on_disconnect: bool = False) -> Any:
        from contract.signing import sign

        ts = time.time_ns() // 1_000_000
        return await self.call({"id": request_id, "method": "logon", "params": {
            "api_key": account.api_key, "timestamp": ts,
            "signature": sign(account.secret, ts, account.api_key),
            "cancel_on_disconnect": cancel_on_disconnect}})

    async def recv_execution(self, timeout_s: float = TIMEOUT_S) -> Any:
        """The next ``executions`` push (``balances`` pushes in between are skipped)."""
        while True:
            message = await self.recv(timeout_s)
            if message.get("channel") != "balances":
                return message

    async def close(self) -> None:
        await self.ws.close()


def error_code(reply: Any) -> str:
    assert "error" in reply, reply
    code: str = reply["error"]["code"]
    return code

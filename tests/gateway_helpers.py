"""Helpers for the gateway tests: configs, real engine/gateway processes, ws clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from msgspec.structs import replace
from streamex_process import StreamexProcess
from timing import TIMEOUT_S
from websockets.asyncio.client import ClientConnection, connect

from contract.keys import lease_key
from contract.settings import Account, Config, EngineConfig, LimitsConfig
from gateway.server import Gateway
from streamex.client import ExecutionReport, OrderClient
from streamex.config import dump_config

REPO = Path(__file__).resolve().parent.parent

ALICE = Account("alice", "alice-key", "alice-secret-0123456789")
BOB = Account("bob", "bob-key", "bob-secret-0123456789")
CAROL = Account("carol", "carol-key", "carol-secret-0123456789")
ACCOUNTS = (ALICE, BOB, CAROL)


def make_config(engine: EngineConfig | None = None, **limits: Any) -> Config:
    """Default markets, the three test accounts, ``[limits]`` overrides, an ``[engine]``."""
    return Config(accounts=ACCOUNTS, limits=replace(LimitsConfig(), **limits),
                  engine=engine or EngineConfig())


def write_config(directory: Path, config: Config) -> Path:
    path = directory / "streamex.toml"
    path.write_text(dump_config(config))
    return path


class Process(StreamexProcess):
    """A ``python -m streamex ...`` child process with its output in ``log_path``."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        super().__init__(args, log_path, timeout_s=TIMEOUT_S)


def engine_process(config_path: Path, redis_url: str, log_path: Path) -> Process:
    return Process(["engine", "--config", str(config_path), "--redis-url", redis_url,
                    "--consumer", "engine-test"], log_path)


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
                            timeout_s: float = TIMEOUT_S) -> None:
    """Wait until an engine holds the lease of every market (it then serves them)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for _ in range(int(timeout_s / 0.02)):
            if all([await client.exists(lease_key(s)) for s in symbols]):
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise AssertionError(f"no engine took the markets within {timeout_s} s")


@contextlib.asynccontextmanager
async def running_gateway(config: Config, redis_url: str, **options: Any
                          ) -> AsyncIterator[tuple[Gateway, str]]:
    """An in-process gateway on a free loopback port; yields it and its ws:// URL."""
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

    async def close(self) -> None:
        await self.ws.close()


def error_code(reply: Any) -> str:
    assert "error" in reply, reply
    code: str = reply["error"]["code"]
    return code

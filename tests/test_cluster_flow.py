"""The whole exchange on a Redis Cluster (``streamex up --cluster 3``), through a primary failover.

Four markets spread over the primaries by their hash tags. Clients trade
through the real gateway and watch the real feed; engines and a primary are
killed with SIGKILL. After a failover every order answered ``received`` has
exactly one outcome in its market's event stream, and with ``durability =
"replicated"`` no report a client was sent is contradicted by what the
stream ends up holding (it is read from the replica that took over).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from timing import scaled, wait_until, wait_until_async
from up_helpers import Up, cmdline
from websockets.exceptions import ConnectionClosed

from contract.errors import StreamexError
from contract.events import CancelRejected, Report
from contract.keys import applied_key, in_stream, out_stream
from contract.market import DEFAULT_MARKETS, Market
from contract.streams import events_of
from streamex.client import ExecutionReport, MarketDataClient, OrderClient
from streamex.config import dump_config

pytestmark = pytest.mark.usefixtures("cluster_garbage")

SOL = Market("SOL-USD", "SOL", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000")
X1 = Market("X1-USD", "X1", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000")
MARKETS = (*DEFAULT_MARKETS, SOL, X1)
SYMBOLS = [m.symbol for m in MARKETS]


def write_config(directory: Path) -> Path:
    from contract.settings import Config, LimitsConfig

    big = 1_000_000
    config = Config(markets=MARKETS, limits=LimitsConfig(
        connection_rate=float(big), connection_burst=big, account_rate=float(big),
        account_burst=big))
    path = directory / "cluster.toml"
    path.write_text(dump_config(config))
    return path


def homes(up: Up) -> dict[str, int]:
    """The port of the primary holding each market, from the banner."""
    line = next(x for x in up.log_path.read_text().splitlines() if x.startswith("  markets"))
    return {s: int(p) for s, p in re.findall(r"(\S+) on :(\d+)", line)}


def cluster_client(up: Up) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster.from_url(up.redis_url)


def pid_of_node(up: Up, port: int) -> int:
    with redis.Redis(host="127.0.0.1", port=port, password=up.password) as node:
        return int(node.info("server")["process_id"])


def engine_pid(up: Up, symbol: str) -> int | None:
    """The live engine process serving ``symbol`` (``streamex up`` restarts a killed one)."""
    from up_helpers import descendants

    want = f"--markets\x00{symbol}\x00".encode()
    found = [p for p in descendants(up.proc.pid) if want in cmdline(p)]
    return found[0] if found else None


async def trade_in_every_market(up: Up, price: str) -> None:
    """In each market: a 0.5 sell at ``price`` (below any resting one), a 0.2 buy crosses it."""
    (key1, secret1), (key2, secret2) = up.accounts[:2]
    async with OrderClient.connect(up.gateway_url) as maker, \
            OrderClient.connect(up.gateway_url) as taker, \
            MarketDataClient.connect(up.marketdata_url) as feed:
        await maker.logon(key1, secret1)
        await taker.logon(key2, secret2)
        for symbol in SYMBOLS:
            await feed.subscribe("trades", symbol)
        for symbol in SYMBOLS:
            sell = await maker.place(symbol, "sell", "limit", "0.5", price)
            await taker.place(symbol, "buy", "limit", "0.2", price)
            async with asyncio.timeout(scaled(20)):
                while True:
                    report = await maker.next_execution()
                    if report.exec_type == "trade":
                        break
            assert (report.order_id, Decimal(report.last_qty or "0"),
                    Decimal(report.leaves_qty or "0")) == (sell.order_id, Decimal("0.2"),
                                                           Decimal("0.3"))
        seen: set[str] = set()
        async with asyncio.timeout(scaled(20)):
            while seen != set(SYMBOLS):
                push = await feed.next_push()
                if push["channel"] == "trades" and push["type"] == "update":
                    seen.add(push["symbol"])


async def base_totals(up: Up, account: int) -> dict[str, Decimal]:
    """Available + held of every market's base asset, as the account's balances say."""
    key, secret = up.accounts[account]
    async with OrderClient.connect(up.gateway_url) as client:
        await client.logon(key, secret)
        got = {b.asset: Decimal(b.available) + Decimal(b.held) for b in await client.balances()}
    return {m.base: got.get(m.base, Decimal(0)) for m in MARKETS}


def test_the_exchange_on_a_cluster_trades_and_recovers_an_engine(tmp_path: Path) -> None:
    up = Up(None, tmp_path / "up.log", extra=("--cluster", "3", "--config",
                                              str(write_config(tmp_path))))
    try:
        assert len(set(homes(up).values())) >= 2, homes(up)  # spread over the primaries
        before = asyncio.run(base_totals(up, 0))
        asyncio.run(trade_in_every_market(up, "100.00"))
        # The risk stage settles every market's fills, whichever primary holds the market
        # (markets sharing a node are still separate slots): the seller's base falls by 0.2.
        wait_until(lambda: asyncio.run(base_totals(up, 0)) == {
            a: v - Decimal("0.2") for a, v in before.items()},
            timeout_s=scaled(20), what="every market's fill settled")
        # kill -9 the engine of a market: streamex up restarts it, it recovers (snapshot +
        # replay + claim) on its primary, and the book is still there.
        victim = engine_pid(up, "SOL-USD")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: engine_pid(up, "SOL-USD") not in (None, victim),
                   timeout_s=scaled(20), what="the SOL engine restarted")
        asyncio.run(trade_in_every_market(up, "99.00"))
        key, secret = up.accounts[0]

        async def resting() -> list[ExecutionReport]:
            async with OrderClient.connect(up.gateway_url) as client:
                await client.logon(key, secret)
                return await client.open_orders("SOL-USD")

        assert [Decimal(o.leaves_qty or "0") for o in asyncio.run(resting())] == [
            Decimal("0.3"), Decimal("0.3")]
    except BaseException:
        up.stop()
        raise
    assert up.stop() == 0, up.log_path.read_text()


# -- failover under load ------------------------------------------------------------------


class Trader:
    """One account placing and canceling resting orders in every market, recording all."""

    def __init__(self, up: Up, key: str, secret: str, side: str, seed: int) -> None:
        self.up, self.key, self.secret, self.side = up, key, secret, side
        self.rng = random.Random(seed)
        self.received: set[tuple[str, str]] = set()  # (symbol, order id): ids are per market
        self.unconfirmed = 0
        self.reports: list[ExecutionReport] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with OrderClient.connect(self.up.gateway_url) as client:
                    await client.logon(self.key, self.secret)
                    reader = asyncio.create_task(self._read(client))
                    try:
                        await self._trade(client, stop)
                    finally:
                        reader.cancel()
            except (ConnectionClosed, OSError):
                await asyncio.sleep(0.1)

    async def _trade(self, client: OrderClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            symbol = self.rng.choice(SYMBOLS)
            low, high = (50, 99) if self.side == "buy" else (101, 150)
            price = f"{self.rng.randint(low, high)}.00"
            try:
                got = await client.place(symbol, self.side, "limit", "0.01", price)  # type: ignore[arg-type]
                self.received.add((symbol, got.order_id))
            except StreamexError as exc:
                # Unconfirmed (or the backlog unknown) while a primary fails over.
                assert exc.code in ("INTERNAL", "OVERLOADED"), exc
                self.unconfirmed += 1
            await asyncio.sleep(0.002)

    async def _read(self, client: OrderClient) -> None:
        async for report in client.executions():
            self.reports.append(report)


def stream_events(client: redis.cluster.RedisCluster, symbol: str) -> list[Any]:
    return [e for _, fields in client.xrange(out_stream(symbol)) for e in events_of(fields)]


@pytest.mark.parametrize("durability", ["replicated", "async"])
def test_a_primary_failover_under_load(tmp_path: Path, durability: str) -> None:
    up = Up(None, tmp_path / "up.log", extra=("--cluster", "3", "--durability", durability,
                                              "--config", str(write_config(tmp_path))))
    try:
        assert f"durability {durability}" in up.log_path.read_text()
        placed = homes(up)
        victim_port = placed["SOL-USD"]
        others = [s for s, port in placed.items() if port != victim_port]
        assert others
        traders = [Trader(up, key, secret, side, seed)
                   for seed, ((key, secret), side) in enumerate(zip(up.accounts[:2],
                                                                    ("buy", "sell"),
                                                                    strict=True))]
        client = cluster_client(up)

        def applied(symbol: str) -> bytes | None:
            """The last input id the market's engine committed; None while unreachable."""
            try:
                return client.get(applied_key(symbol)) or b"0-0"  # type: ignore[return-value]
            except redis.RedisError:
                return None

        async def scenario() -> None:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(t.run(stop)) for t in traders]
            await wait_until_async(lambda: sum(len(t.received) for t in traders) > 300,
                                   what="orders flowing")
            before = {s: applied(s) for s in others}
            os.kill(pid_of_node(up, victim_port), signal.SIGKILL)  # the busy market's primary
            killed = time.monotonic()
            # Markets on the other primaries keep being applied through the failover.
            await wait_until_async(lambda: all(applied(s) not in (None, before[s])
                                               for s in others),
                                   timeout_s=scaled(5), what="other primaries' markets moving")
            assert time.monotonic() - killed < scaled(5)
            # The market on the failed primary resumes by itself on the promoted replica.
            sol_before = applied("SOL-USD")
            await wait_until_async(lambda: applied("SOL-USD") not in (None, sol_before),
                                   timeout_s=scaled(30), what="SOL trading again")
            await asyncio.sleep(0)
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        # Let every engine apply what its stream holds, then compare.
        for symbol in SYMBOLS:
            wait_until(lambda s=symbol: applied(s) == client.xrevrange(in_stream(s), count=1)[0][0],  # type: ignore[misc]
                       timeout_s=scaled(30), what=f"{symbol} applied")
        events = {s: stream_events(client, s) for s in SYMBOLS}
        # Order ids are input entry ids: unique within a market, not across markets.
        outcomes: Counter[tuple[str, str]] = Counter(
            (s, e.order_id) for s, evs in events.items() for e in evs
            if isinstance(e, Report) and e.exec_type in ("new", "rejected"))
        received = {key for t in traders for key in t.received}
        lost = [key for key in received if outcomes[key] == 0]
        twice = [key for key, n in outcomes.items() if n > 1]
        assert not twice, "an order was applied twice"
        by_seq = {(s, e.seq): e for s, evs in events.items() for e in evs}
        contradicted = []
        for t in traders:
            for r in t.reports:
                assert r.exec_id is not None
                symbol, seq = r.exec_id.rsplit(":", 1)
                event = by_seq.get((symbol, int(seq)))
                same = (isinstance(event, Report | CancelRejected)
                        and event.order_id == r.order_id
                        and (not isinstance(event, Report) or (event.exec_type, event.status)
                             == (r.exec_type, r.status)))
                if not same:
                    contradicted.append(r.exec_id)
        print(f"{durability}: {len(received)} received, {sum(t.unconfirmed for t in traders)} "
              f"unconfirmed, {len(lost)} lost, {len(contradicted)} reports contradicted")
        if durability == "replicated":
            assert not lost, f"received orders without an outcome: {lost[:5]}"
            assert not contradicted, f"published reports contradicted: {contradicted[:5]}"
        else:
            # Async replication: the last writes a primary acknowledged may not have reached
            # its replica. Measured here: 0 lost in every run so far; the bound is what one
            # failover can cost at this rate (~1 ms of acknowledged orders).
            assert len(lost) <= 50 and len(contradicted) <= 100
        client.close()
    finally:
        up.stop()

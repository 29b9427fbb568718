"""Helpers for the market-data tests: processes, flows, and a checking book client.

The client side here is written from PROTOCOL.md alone (its own checksum, its
own book): it must not share code with ``marketdata`` or it would agree with
the feed's bugs.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from streamex_process import StreamexProcess
from timing import TIMEOUT_S
from websockets.asyncio.client import ClientConnection

from contract import keys
from contract.commands import Amend, Cancel, Command, Place, encode_command
from contract.events import Event, Trade
from contract.market import Market
from contract.streams import IN_FIELD, events_of
from matching.book import OrderBook

REPO = Path(__file__).resolve().parent.parent
ACCOUNTS = ("a1", "a2", "a3", "a4", "a5")


# -- processes --------------------------------------------------------------------


def write_config(directory: Path, **engine: int | float) -> Path:
    """A TOML config with the default markets and the given ``[engine]`` settings."""
    lines = ["[engine]"] + [f"{k} = {v!r}" for k, v in engine.items()]
    path = directory / "streamex.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Child(StreamexProcess):
    """A ``python -m streamex ...`` child process; its output goes to ``log_path``."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        super().__init__(args, log_path, timeout_s=TIMEOUT_S)


class FeedProcess(Child):
    """``streamex marketdata --port 0``; :attr:`url` once it listens."""

    def __init__(self, redis_url: str, config: Path, log_path: Path) -> None:
        super().__init__(["marketdata", "--config", str(config), "--redis-url", redis_url,
                          "--port", "0"], log_path)
        self.url = ""

    def start(self) -> FeedProcess:
        super().start()
        self.url = self.wait_listening("marketdata")
        return self


class EngineProcess(Child):
    """``streamex engine`` for the configured markets."""

    def __init__(self, redis_url: str, config: Path, log_path: Path) -> None:
        super().__init__(["engine", "--config", str(config), "--redis-url", redis_url,
                          "--consumer", "engine-md-test"], log_path)


# -- flows ------------------------------------------------------------------------


class Flow:
    """A seeded random command flow and the reference run of it (in-process OrderBook).

    Passive orders spread over ``spread`` ticks on each side of a drifting mid
    (so books get hundreds of levels; some of them icebergs, whose hidden part
    no view may show), cancels, amends, takers that sweep several levels and
    stops that trigger as the mid moves. ``events[i]`` are the events of
    ``entries[i]``.
    """

    def __init__(self, market: Market, n: int, seed: int, spread: int = 700,
                 start_ms: int | None = None) -> None:
        rng = random.Random(seed)
        self.market = market
        self.book = OrderBook(market)
        start_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self.entries: list[tuple[str, Command]] = []
        self.events: list[list[Event]] = []
        mid = 5_000_000
        open_ids: list[str] = []
        lot = market.min_lots
        for i in range(n):
            entry_id = f"{start_ms + i // 100}-{i % 100}"
            account = ACCOUNTS[rng.randrange(len(ACCOUNTS))]
            r = rng.random()
            open_ids = [o for o in open_ids if o in self.book.orders] if i % 50 == 0 else open_ids
            cmd: Command
            if r < 0.01:
                mid += rng.randint(-20, 20)
                cmd = Place(account, "buy", "limit", lot * rng.randint(1, 5), mid - 1)
            elif r < 0.25 and open_ids:
                oid = open_ids.pop(rng.randrange(len(open_ids)))
                o = self.book.orders.get(oid)
                cmd = Cancel(o.account if o else account, order_id=oid)
            elif r < 0.32 and open_ids:
                oid = open_ids[rng.randrange(len(open_ids))]
                o = self.book.orders.get(oid)
                if o is None:
                    cmd = Cancel(account, order_id=oid)
                elif rng.random() < 0.5:
                    cmd = Amend(o.account, order_id=oid, qty=max(o.cum_qty + 1, o.qty - lot))
                else:
                    step = rng.randint(-5, 5) or 1
                    cmd = Amend(o.account, order_id=oid, price=max(1, o.price + step))
            elif r < 0.40:
                side = rng.choice(("buy", "sell"))
                kind = rng.random()
                qty = lot * rng.randint(5, 120)
                if kind < 0.3:
                    cmd = Place(account, side, "market", qty)
                elif kind < 0.4:  # a stop a few ticks beyond the mid: triggers later
                    away = rng.randint(1, 40)
                    stop = mid + away if side == "buy" else mid - away
                    reach = rng.randint(0, 60)
                    limit = stop + reach if side == "buy" else stop - reach
                    cmd = (Place(account, side, "stop_market", qty, stop_price=stop)
                           if rng.random() < 0.5 else
                           Place(account, side, "stop_limit", qty, limit, stop_price=stop))
                else:
                    reach = rng.randint(0, 60)
                    price = mid + reach if side == "buy" else mid - reach
                    tif = "IOC" if kind < 0.7 else "GTC"
                    cmd = Place(account, side, "limit", qty, price, tif=tif)
            else:
                side = rng.choice(("buy", "sell"))
                off = rng.randint(1, spread)
                price = mid - off if side == "buy" else mid + off
                qty = lot * rng.randint(1, 20)
                display = lot * rng.randint(1, 4) if rng.random() < 0.15 else 0
                cmd = Place(account, side, "limit", qty, price,
                            stp=rng.choice(("cancel_taker", "cancel_maker", "none")),
                            display_qty=min(display, qty))
            self.entries.append((entry_id, cmd))
            self.events.append(self.book.apply(entry_id, cmd))
            if entry_id in self.book.orders:
                open_ids.append(entry_id)

    def all_events(self) -> list[Event]:
        return [e for evs in self.events for e in evs]

    def trades(self) -> list[Trade]:
        return [e for e in self.all_events() if isinstance(e, Trade)]

    def xadd(self, client: redis.Redis, start: int, stop: int, chunk: int = 500) -> None:
        """XADD entries ``[start, stop)`` to the market's ``:in`` with their ids, pipelined."""
        key = keys.in_stream(self.market.symbol)
        for i in range(start, stop, chunk):
            pipe = client.pipeline(transaction=False)
            for entry_id, cmd in self.entries[i:min(i + chunk, stop)]:
                pipe.xadd(key, {IN_FIELD: encode_command(cmd)}, id=entry_id)
            pipe.execute()


class Replay:
    """The reference book replayed up to a given engine seq (to check each message)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.book = OrderBook(flow.market)
        self.next = 0
        self.last_trade: Trade | None = None

    def to_seq(self, seq: int) -> None:
        """Apply commands until the book's seq reaches ``seq`` (it must land exactly)."""
        while self.book.seq < seq:
            entry_id, cmd = self.flow.entries[self.next]
            self.next += 1
            for e in self.book.apply(entry_id, cmd):
                if isinstance(e, Trade):
                    self.last_trade = e
        assert self.book.seq == seq, f"no command ends at seq {seq} (book at {self.book.seq})"

    def top(self, side: str, depth: int) -> list[list[str]]:
        m = self.flow.market
        return [[m.format_price(p), m.format_qty(q)] for p, q in self.book.depth(side, depth)]


def engine_seq(client: redis.Redis, symbol: str) -> int:
    """Seq of the last event in the market's ``:out`` (0 when empty)."""
    last = client.xrevrange(keys.out_stream(symbol), count=1)
    if not last:
        return 0
    return events_of(last[0][1])[-1].seq  # type: ignore[index]


# -- the checking client -------------------------------------------------------------


def kraken_checksum(asks: list[list[str]], bids: list[list[str]]) -> int:
    """PROTOCOL.md's checksum, written independently of the feed."""
    text = ""
    for price, qty in asks[:10] + bids[:10]:
        text += price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


class BookMirror:
    """A subscriber's copy of one symbol's book at one depth, checked on every message.

    :meth:`apply` verifies ``prev_seq`` chaining, the checksum and the depth
    cut; ``bids``/``asks`` are ``[[price, qty]]`` best first.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.seq: int | None = None
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.snapshots = 0
        self.updates = 0

    def apply(self, msg: dict[str, Any]) -> None:
        assert msg["channel"] == "book"
        if msg["type"] == "snapshot":
            self.bids = {p: q for p, q in msg["bids"]}
            self.asks = {p: q for p, q in msg["asks"]}
            assert len(msg["bids"]) <= self.depth and len(msg["asks"]) <= self.depth
            self.snapshots += 1
        else:
            assert msg["type"] == "update", msg
            assert msg["prev_seq"] == self.seq, f"chain broken: {msg['prev_seq']} != {self.seq}"
            assert msg["seq"] > msg["prev_seq"]
            for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
                for price, qty in levels:
                    if qty == "0":
                        assert price in side, f"delete of a level not held: {price}"
                        del side[price]
                    else:
                        side[price] = qty
            self.updates += 1
            assert len(self.bids) <= self.depth and len(self.asks) <= self.depth, \
                f"update leaves more than {self.depth} levels"
        self.seq = msg["seq"]
        assert kraken_checksum(self.top("sell"), self.top("buy")) == msg["checksum"], \
            f"checksum mismatch at seq {self.seq}"

    def top(self, side: str) -> list[list[str]]:
        if side == "buy":
            return [[p, self.bids[p]] for p in sorted(self.bids, key=_dec, reverse=True)]
        return [[p, self.asks[p]] for p in sorted(self.asks, key=_dec)]


def _dec(price: str) -> tuple[int, str]:
    whole, _, frac = price.partition(".")
    return (int(whole), frac)


async def request(ws: ClientConnection, method: str, params: dict[str, Any] | None = None,
                  request_id: int = 1, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Send a request; return its reply (pushes received before it are discarded)."""
    body: dict[str, Any] = {"id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    await ws.send(json.dumps(body))
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await recv_json(ws, deadline - time.monotonic())
        if "id" in msg:
            return msg


async def recv_json(ws: ClientConnection, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    import asyncio

    async with asyncio.timeout(max(timeout_s, 0.001)):
        frame = await ws.recv()
    result: dict[str, Any] = json.loads(frame)
    return result

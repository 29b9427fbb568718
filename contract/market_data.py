"""The market-data protocol (PROTOCOL.md, "Market data"): subscriptions and pushes.

Pushes are msgspec Structs encoded to JSON once (``contract.wire.encode``);
the resulting ``bytes`` are what every subscriber of a stream is sent as a
text frame. Field order follows PROTOCOL.md. Prices and quantities are
decimal strings here; the feed converts ticks and lots
(``marketdata.formatter``). The book checksum is Kraken v2's CRC32 rule.
No I/O.
"""

from __future__ import annotations

import zlib
from typing import Literal

import msgspec

from contract.wire import encode

Channel = Literal["trades", "book", "ticker"]

DEPTHS: tuple[int, ...] = (10, 25, 100, 500)
"""The book depths a subscriber may ask for."""
DEFAULT_DEPTH = 10


class SubscriptionParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``{"channel", "symbol", "depth"?}`` of ``subscribe`` and ``unsubscribe``."""

    channel: Channel
    symbol: str
    depth: int | None = None

    def to_wire(self) -> dict[str, str | int]:
        """The params echoed in ``subscribed``/``unsubscribed`` results (no null depth)."""
        out: dict[str, str | int] = {"channel": self.channel, "symbol": self.symbol}
        if self.depth is not None:
            out["depth"] = self.depth
        return out

WireLevel = tuple[str, str]
"""A price level on the wire: ``[price, qty]`` decimal strings."""


class BookSnapshot(msgspec.Struct):
    """``{"channel": "book", "type": "snapshot", "symbol", "seq", "bids", "asks", "checksum"}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    bids: list[WireLevel]
    asks: list[WireLevel]
    checksum: int


class BookUpdate(msgspec.Struct):
    """``{"channel": "book", "type": "update", "symbol", "seq", "prev_seq", ...}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    prev_seq: int
    bids: list[WireLevel]
    asks: list[WireLevel]
    checksum: int


class TradeData(msgspec.Struct):
    trade_id: int
    price: str
    qty: str
    taker_side: str
    ts: int


class Trades(msgspec.Struct):
    """``{"channel": "trades", "type": "update", "symbol", "seq", "data": [...]}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    data: list[TradeData]


class Ticker(msgspec.Struct):
    """``{"channel": "ticker", "type", "symbol", "seq", "best_bid", ... "last_qty"}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    best_bid: str | None
    best_bid_qty: str | None
    best_ask: str | None
    best_ask_qty: str | None
    last_price: str | None
    last_qty: str | None


class Heartbeat(msgspec.Struct):
    """``{"channel": "heartbeat", "ts", "seqs": {"<symbol>": <seq>}}``"""

    channel: str
    ts: int
    seqs: dict[str, int]


def heartbeat(ts: int, seqs: dict[str, int]) -> bytes:
    return encode(Heartbeat("heartbeat", ts, seqs))


def checksum(asks: list[WireLevel], bids: list[WireLevel]) -> int:
    """Kraken v2 book checksum of the top 10 asks then top 10 bids (best first).

    Each level contributes its price and qty strings with ``.`` removed and
    leading zeros stripped; the result is ``zlib.crc32`` (unsigned) of the
    concatenation. Pass at least the top 10 levels of each side. O(20).
    """
    parts = []
    for levels in (asks[:10], bids[:10]):
        for price, qty in levels:
            parts.append(price.replace(".", "").lstrip("0"))
            parts.append(qty.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())

"""The market-data protocol (PROTOCOL.md, "Market data" and section C): subscriptions
and pushes.

Pushes are msgspec Structs encoded to JSON once (``contract.wire.encode``);
the resulting ``bytes`` are what every subscriber of a stream is sent as a
text frame. Field order follows PROTOCOL.md; the fields section C added
(``ts`` of book and ticker, the ticker's 24-hour statistics) come last, so a
v1 client reading by name is unaffected. Prices and quantities are decimal
strings here; the feed converts ticks and lots (``marketdata.formatter``).
The book checksum is Kraken v2's CRC32 rule. No I/O.
"""

from __future__ import annotations

import zlib
from typing import Literal

import msgspec

from contract.wire import encode

Channel = Literal["trades", "book", "ticker", "candles"]

DEPTHS: tuple[int, ...] = (10, 25, 100, 500)
"""The book depths a subscriber may ask for."""
DEFAULT_DEPTH = 10
CANDLES_SNAPSHOT = 100
"""Candles in a ``candles`` snapshot: the last ones, the current one included."""
TRADES_SNAPSHOT = 50
"""Trades in a ``trades`` snapshot: the last ones."""


class SubscriptionParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``{"channel", "symbol", "depth"?, "interval"?}`` of ``subscribe`` and ``unsubscribe``.

    ``interval`` (``candles`` only) is checked against the served intervals
    by the market-data service (``candles.core.INTERVALS``).
    """

    channel: Channel
    symbol: str
    depth: int | None = None
    interval: str | None = None

    def to_wire(self) -> dict[str, str | int]:
        """The params echoed in ``subscribed``/``unsubscribed`` results (no null fields)."""
        out: dict[str, str | int] = {"channel": self.channel, "symbol": self.symbol}
        if self.depth is not None:
            out["depth"] = self.depth
        if self.interval is not None:
            out["interval"] = self.interval
        return out

WireLevel = tuple[str, str]
"""A price level on the wire: ``[price, qty]`` decimal strings."""


class BookSnapshot(msgspec.Struct):
    """``{"channel": "book", "type": "snapshot", "symbol", "seq", "bids", "asks", "checksum",
    "ts"}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    bids: list[WireLevel]
    asks: list[WireLevel]
    checksum: int
    ts: int
    """The market's clock: the ``ts`` of the last engine event applied (0: none yet)."""


class BookUpdate(msgspec.Struct):
    """``{"channel": "book", "type": "update", "symbol", "seq", "prev_seq", ..., "ts"}``"""

    channel: str
    type: str
    symbol: str
    seq: int
    prev_seq: int
    bids: list[WireLevel]
    asks: list[WireLevel]
    checksum: int
    ts: int


class TradeData(msgspec.Struct):
    trade_id: int
    price: str
    qty: str
    taker_side: str
    ts: int


class Trades(msgspec.Struct):
    """``{"channel": "trades", "type": "update" | "snapshot", "symbol", "seq", "data": [...]}``

    An update holds one engine batch's trades (``seq``: the last one's event);
    the snapshot a subscribe answers holds the last :data:`TRADES_SNAPSHOT`
    trades, oldest first (``seq``: the last event the feed had applied).
    """

    channel: str
    type: str
    symbol: str
    seq: int
    data: list[TradeData]


class Ticker(msgspec.Struct):
    """``{"channel": "ticker", "type", "symbol", "seq", "best_bid", ... "last_qty",
    "open_24h", "high_24h", "low_24h", "volume_24h", "quote_volume_24h", "ts"}``

    The 24-hour fields are the rolling window at ``ts`` (``candles.core``):
    prices null and volumes zero when nothing traded in it.
    """

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
    open_24h: str | None
    high_24h: str | None
    low_24h: str | None
    volume_24h: str
    """Base traded, with the lot's decimals."""
    quote_volume_24h: str
    """Quote traded (sum of price x qty), with the quote asset's decimals."""
    ts: int


class CandleData(msgspec.Struct):
    """One candle on the wire (Binance's kline fields, named as in PROTOCOL.md section C)."""

    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    closed: bool


class Candles(msgspec.Struct):
    """``{"channel": "candles", "type", "symbol", "interval", "seq", "data": [...]}``

    A snapshot holds the last :data:`CANDLES_SNAPSHOT` candles, oldest first,
    the current one included; an update the candles one engine batch changed,
    oldest first, each once in its state after the batch.
    """

    channel: str
    type: str
    symbol: str
    interval: str
    seq: int
    data: list[CandleData]


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

"""The market-data wire messages (PROTOCOL.md, "Market data") and their encoding.

Pushes and replies are msgspec Structs encoded to JSON once; the resulting
``bytes`` (UTF-8 JSON) are what every subscriber of a stream is sent as a text
frame. Field order follows PROTOCOL.md. Prices and quantities are decimal
strings here; converting ticks and lots is the caller's job
(:class:`PriceFormatter`). The book checksum is Kraken v2's CRC32 rule.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from engine.market import Market

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


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class ErrorReply(msgspec.Struct):
    id: int | str | None
    error: ErrorBody


class ResultReply(msgspec.Struct):
    id: int | str | None
    result: Any


_encoder = msgspec.json.Encoder()


def encode(msg: msgspec.Struct) -> bytes:
    """UTF-8 JSON of one message; send it with ``text=True``. O(size)."""
    return _encoder.encode(msg)


def error_reply(request_id: int | str | None, code: str, message: str) -> bytes:
    return _encoder.encode(ErrorReply(request_id, ErrorBody(code, message)))


def result_reply(request_id: int | str | None, result: Any) -> bytes:
    return _encoder.encode(ResultReply(request_id, result))


def heartbeat(ts: int, seqs: dict[str, int]) -> bytes:
    return _encoder.encode(Heartbeat("heartbeat", ts, seqs))


class PriceFormatter:
    """Ticks and lots -> decimal strings for one market, memoized.

    Books reuse a small set of prices and quantities, so each string is built
    once. The memo is cleared when it exceeds ``max_entries`` (bounded memory).
    """

    __slots__ = ("market", "_prices", "_qtys", "_max")

    def __init__(self, market: Market, max_entries: int = 100_000) -> None:
        self.market = market
        self._prices: dict[int, str] = {}
        self._qtys: dict[int, str] = {}
        self._max = max_entries

    def price(self, ticks: int) -> str:
        s = self._prices.get(ticks)
        if s is None:
            if len(self._prices) >= self._max:
                self._prices.clear()
            s = self._prices[ticks] = self.market.format_price(ticks)
        return s

    def qty(self, lots: int) -> str:
        if lots == 0:
            return "0"
        s = self._qtys.get(lots)
        if s is None:
            if len(self._qtys) >= self._max:
                self._qtys.clear()
            s = self._qtys[lots] = self.market.format_qty(lots)
        return s

    def levels(self, levels: list[tuple[int, int]]) -> list[WireLevel]:
        """``[(ticks, lots)]`` -> ``[(price, qty)]``; a total of 0 becomes ``"0"``."""
        price, qty = self.price, self.qty
        return [(price(p), qty(q)) for p, q in levels]


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

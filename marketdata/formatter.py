"""Ticks and lots -> decimal strings for the feed, memoized per market."""

from __future__ import annotations

from contract.market import Market
from contract.market_data import WireLevel


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

"""What a feed starts its history from: the history database (PROTOCOL.md section C).

Candles, the 24-hour window and the last trades survive restarts of every
process because they come from the database ``streamex history`` writes, not
from the trimmed streams. :func:`read_seed` reads one market's part of it
(synchronous: call it with ``asyncio.to_thread``); the caller hands it to
``MarketFeed.seed`` and then counts, with ``MarketFeed.catch_up``, the trades
the engine snapshot covers but the database has not written yet (read from
``:out`` after :attr:`HistorySeed.position`). No Redis here.

The reads are not one transaction (the store reads each query on its own),
so the seed is taken between two equal reads of the last trade id: history
writes a market's trades, candles and stream position in one transaction, so
equal ids before and after mean every read saw the same trades. The position
is read first: if a write lands before the trade id is read, the position is
only older than the trades, and the catch-up skips what it reads twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from candles.core import INTERVALS, Candle, window_start
from contract.commands import Side
from contract.market_data import CANDLES_SNAPSHOT, TRADES_SNAPSHOT
from marketdata.feed import RecentTrade
from store.queries import Queries

log = logging.getLogger("streamex.marketdata")

ATTEMPTS = 20
"""Reads of a seed before giving up on an unchanged last trade id (a busy writer)."""


@dataclass(frozen=True, slots=True)
class HistorySeed:
    """One market's history as the database has it (see ``MarketFeed.seed``)."""

    candles: dict[str, list[Candle]]
    """interval -> its last ``CANDLES_SNAPSHOT`` candles, oldest first."""
    minutes: list[Candle]
    """The one-minute candles of the 24-hour window ending at the last trade."""
    trades: list[RecentTrade]
    """The last ``TRADES_SNAPSHOT`` trades, oldest first."""
    last_trade_id: int
    """The last trade everything above counts (0: the database has none)."""
    position: tuple[str, int] | None
    """``(last :out entry id, last seq)`` the database has read, or None."""


def read_seed(store: Queries, symbol: str, attempts: int = ATTEMPTS) -> HistorySeed:
    """Read ``symbol``'s seed from the history database, consistently (module docstring).

    Cost: 2 + 2 x intervals index range scans per attempt, O(candles + 1,440 +
    trades). Raises ``store.db.StoreError`` if the database fails, RuntimeError if
    the last trade id never held still over ``attempts`` reads.
    """
    for _ in range(attempts):
        position = store.position(symbol)
        last_trade_id = store.last_trade_id(symbol)
        rows = store.last_trades(symbol, TRADES_SNAPSHOT)
        candles = {name: store.klines(symbol, name, limit=CANDLES_SNAPSHOT)
                   for name in INTERVALS}
        minutes = store.minute_candles(symbol, window_start(rows[-1].ts)) if rows else []
        newest = rows[-1].trade_id if rows else 0
        if newest == last_trade_id == store.last_trade_id(symbol):
            trades = [(r.trade_id, r.price, r.qty, cast(Side, r.taker_side), r.ts)
                      for r in rows]
            return HistorySeed(candles, minutes, trades, last_trade_id, position)
        log.info("%s: history moved while it was read (trade %d -> %d); reading again",
                 symbol, last_trade_id, newest)
    raise RuntimeError(f"{symbol}: the history database kept moving over {attempts} reads")

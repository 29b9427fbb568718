"""What one write of ``streamex history`` holds, and what it resumes from.

A :class:`Batch` is the rows of some stream entries plus the new positions
of those streams; ``Store.write`` commits all of it in one transaction or
nothing. Rows are plain tuples in the column order of the tables
(``store/migrations``), built by the caller once per row: the cheapest shape
for ``executemany``. Integers that may exceed 2**63 (notionals, quote
volumes, amounts and fees) travel as the decimal string the table stores.

:class:`ResumeState` is what a writer needs after a (re)start to continue
exactly where the database is: every stream's position, each candle series'
current candle, and the fees so far of open orders (reports carry each
fill's fee, the table the order's total). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from candles.core import Candle

OrderUpsert = tuple[str, str, int | None, str, str | None, str, str, str, int, int, str | None,
                    str, int, str, str, str | None, int, int | None, int, int, int, int, int,
                    int | None]
"""symbol, order_id, order_number, account, client_order_id, side, type, tif, price, qty,
quote_qty, status, cum_qty, cum_notional, fee (the order's total), reason, created_ts,
working_ts, updated_ts, last_seq, stop_price, expire_time, display_qty, trigger_ts. On
conflict the state columns are replaced, ``reason``, ``working_ts`` and ``trigger_ts``
keep the stored value when the new one is None (``working_ts``, ``trigger_ts``: the
first one stays)."""

ExecutionInsert = tuple[str, int, str, int, str, str | None, str | None, str, str | None,
                        str | None, int, int, int, int, int, int, str, str | None, int | None,
                        str, str | None]
"""stream, seq, symbol, ts, account, order_id, client_order_id, exec_type, status, side,
price, qty, last_qty, last_price, cum_qty, leaves_qty, cum_notional, liquidity, trade_id,
fee (this fill's), reason."""

TradeInsert = tuple[str, int, int, int, int, int, str, str, str]
"""symbol, trade_id, seq, ts, price, qty, taker_side, maker_order_id, taker_order_id."""

CandleUpsert = tuple[str, str, int, int, int, int, int, int, int, str, int, int]
"""symbol, interval, open_time, close_time, open, high, low, close, volume, quote_volume,
trades, closed (0/1)."""

BalanceUpsert = tuple[int, str, str, str, str, int, int]
"""shard, account, asset, available, held, seq, ts."""

BalanceChangeInsert = tuple[int, int, str, str, str, str, int]
"""shard, seq, account, asset, available, held, ts."""

TransferInsert = tuple[int, int, int, str, str, str, str, str, str, str | None]
"""shard, seq, ts, direction, account, asset, amount, ref, status, reason."""

GapInsert = tuple[str, str, str, int, int, int]
"""stream, after_id, first_id, lost_from_seq, lost_to_seq, noted_ts."""

PositionUpdate = tuple[str, str | None, str, int]
"""stream, the last_id the writer read from the database (None: the stream has no row
yet), new last_id, new last_seq."""


@dataclass(slots=True)
class Batch:
    """The rows of some stream entries and the streams' new positions (one transaction)."""

    positions: list[PositionUpdate] = field(default_factory=list)
    orders: list[OrderUpsert] = field(default_factory=list)
    executions: list[ExecutionInsert] = field(default_factory=list)
    trades: list[TradeInsert] = field(default_factory=list)
    candles: list[CandleUpsert] = field(default_factory=list)
    balances: list[BalanceUpsert] = field(default_factory=list)
    balance_changes: list[BalanceChangeInsert] = field(default_factory=list)
    transfers: list[TransferInsert] = field(default_factory=list)
    gaps: list[GapInsert] = field(default_factory=list)
    entries: int = 0
    """Stream entries the batch covers (for counters)."""
    events: int = 0
    """Events in them, skipped ones included (for counters)."""

    @property
    def rows(self) -> int:
        """Rows written, positions excluded. O(1)."""
        return (len(self.orders) + len(self.executions) + len(self.trades) + len(self.candles)
                + len(self.balances) + len(self.balance_changes) + len(self.transfers)
                + len(self.gaps))


@dataclass(slots=True)
class ResumeState:
    """The database as a writer resumes from it, read in one snapshot."""

    positions: dict[str, tuple[str, int]]
    """stream -> (last_id, last_seq)."""
    candles: dict[tuple[str, str], Candle]
    """(symbol, interval) -> the latest candle of that series (the one trades go on in)."""
    open_fees: dict[tuple[str, str], int]
    """(symbol, order_id) -> fees so far, for open orders that paid some."""

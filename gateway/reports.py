"""Engine events -> public execution reports (decimal strings), without I/O.

:func:`report_of` turns a ``Report`` into the wire :class:`ExecutionReport`,
:func:`cancel_rejected_of` a ``CancelRejected`` (with the named order's
state when it is still open), and :func:`status_of` restates
an open order for ``orders.open``. :func:`push_frame` encodes the
``executions`` push once, to be sent to every connection of the account.
A report the risk stage gave on a market's behalf (``MarketAnswer``) is
formatted the same way with the exec id :func:`risk_exec_id`.
:func:`balance_frame` does the same for balances (``contract.market.format_units``).
Cost: O(1) per event plus the decimal formatting.
"""

from __future__ import annotations

import msgspec

from contract.commands import LIMIT_TYPES
from contract.events import CancelRejected, Report
from contract.market import Market, format_units
from contract.order_entry import BalancePush, BalanceUpdate, ExecutionPush, ExecutionReport
from contract.risk import risk_tag
from contract.wire import encoder


def exec_id_of(symbol: str, seq: int) -> str:
    """The execution id of the event with engine ``seq``: unique per market and stable."""
    return f"{symbol}:{seq}"


def risk_exec_id(shard: int, seq: int) -> str:
    """The execution id of risk shard ``shard``'s event ``seq``: ``"acct-<K>:<seq>"``.

    Never equal to a market's (a symbol is upper case, ``"BTC-USD:<seq>"``), unique
    across the shards and stable (the shard's seq is deterministic)."""
    return f"{risk_tag(shard)}:{seq}"


def balance_frame(asset: str, decimals: int, available: int, held: int, ts: int) -> bytes:
    """The ``balances`` push of one asset's new balance, as JSON bytes."""
    return encoder.encode(BalancePush(data=BalanceUpdate(
        asset, format_units(available, decimals), format_units(held, decimals), ts)))


def report_of(market: Market, r: Report, exec_id: str | None = None) -> ExecutionReport:
    """The wire form of an engine ``Report`` (``exec_id`` default: the market's of its seq).

    ``price`` is None for the market types; ``stop_price``, ``expire_time`` and
    ``display_qty`` are left out (UNSET) where the order has none (0 in the Report).
    """
    fmt_qty = market.format_qty
    trade = r.exec_type == "trade"
    return ExecutionReport(
        exec_id=exec_id_of(market.symbol, r.seq) if exec_id is None else exec_id,
        order_id=r.order_id,
        client_order_id=r.client_order_id,
        symbol=market.symbol,
        side=r.side,
        type=r.type,
        tif=r.tif,
        price=market.format_price(r.price) if r.type in LIMIT_TYPES else None,
        qty=fmt_qty(r.qty),
        exec_type=r.exec_type,
        status=r.status,
        last_qty=fmt_qty(r.last_qty) if trade else None,
        last_price=market.format_price(r.last_price) if trade else None,
        cum_qty=fmt_qty(r.cum_qty),
        leaves_qty=fmt_qty(r.leaves_qty),
        avg_price=market.format_avg_price(r.cum_notional, r.cum_qty),
        liquidity=r.liquidity if trade else None,
        trade_id=r.trade_id if trade else None,
        reason=r.reason,
        ts=r.ts,
        fee=market.format_quote(r.fee if trade else 0),
        fee_asset=market.quote,
        stop_price=market.format_price(r.stop_price) if r.stop_price else msgspec.UNSET,
        expire_time=r.expire_time if r.expire_time else msgspec.UNSET,
        display_qty=fmt_qty(r.display_qty) if r.display_qty else msgspec.UNSET,
    )


def status_of(market: Market, r: Report) -> ExecutionReport:
    """An open order restated from its latest ``Report``: exec_type ``status``, no exec id
    (``status`` stays the order's: ``untriggered`` for a stop waiting for its trigger)."""
    return msgspec.structs.replace(
        report_of(market, r), exec_id=None, exec_type="status", last_qty=None,
        last_price=None, liquidity=None, trade_id=None, reason=None,
        fee=market.format_quote(0))


def cancel_rejected_of(market: Market, e: CancelRejected, order: Report | None,
                       exec_id: str | None = None) -> ExecutionReport:
    """The wire form of a refused cancel or amend; ``reason`` is the code.

    ``order`` is the account's open order the request named, as the
    open-orders view knows it at this event (None if it knows no such open
    order). A live order is stated as it is: its ``order_id``, current
    ``status`` (``new``/``partially_filled``) and fields. Without one the
    report echoes the request's ids with ``status`` ``rejected`` and None
    wherever the order is unknown. ``exec_id`` default: the market's of ``e.seq``.
    """
    if exec_id is None:
        exec_id = exec_id_of(market.symbol, e.seq)
    if order is not None:
        return msgspec.structs.replace(
            report_of(market, order), exec_id=exec_id,
            exec_type="cancel_rejected", last_qty=None, last_price=None, liquidity=None,
            trade_id=None, reason=e.reason, ts=e.ts, fee=market.format_quote(0))
    return ExecutionReport(
        exec_id=exec_id,
        order_id=e.order_id,
        client_order_id=e.client_order_id,
        symbol=market.symbol,
        side=None,
        type=None,
        tif=None,
        price=None,
        qty=None,
        exec_type="cancel_rejected",
        status="rejected",
        last_qty=None,
        last_price=None,
        cum_qty=None,
        leaves_qty=None,
        avg_price=None,
        liquidity=None,
        trade_id=None,
        reason=e.reason,
        ts=e.ts,
        fee=market.format_quote(0),
        fee_asset=market.quote,
    )


def push_frame(report: ExecutionReport) -> bytes:
    """The ``executions`` push carrying ``report``, as JSON bytes."""
    return encoder.encode(ExecutionPush(data=report))

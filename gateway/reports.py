"""Engine events -> public execution reports (decimal strings), without I/O.

:func:`report_of` turns a ``Report`` into the wire :class:`ExecutionReport`,
:func:`cancel_rejected_of` a ``CancelRejected`` (with the named order's
state when it is still open), and :func:`status_of` restates
an open order for ``orders.open``. :func:`push_frame` encodes the
``executions`` push once, to be sent to every connection of the account.
Cost: O(1) per event plus the decimal formatting.
"""

from __future__ import annotations

import msgspec

from contract.events import CancelRejected, Report
from contract.market import Market
from contract.order_entry import ExecutionPush, ExecutionReport
from contract.wire import encoder


def exec_id_of(symbol: str, seq: int) -> str:
    """The execution id of the event with engine ``seq``: unique per market and stable."""
    return f"{symbol}:{seq}"


def report_of(market: Market, r: Report) -> ExecutionReport:
    """The wire form of an engine ``Report``."""
    fmt_qty = market.format_qty
    trade = r.exec_type == "trade"
    return ExecutionReport(
        exec_id=exec_id_of(market.symbol, r.seq),
        order_id=r.order_id,
        client_order_id=r.client_order_id,
        symbol=market.symbol,
        side=r.side,
        type=r.type,
        tif=r.tif,
        price=market.format_price(r.price) if r.type == "limit" else None,
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
    )


def status_of(market: Market, r: Report) -> ExecutionReport:
    """An open order restated from its latest ``Report``: exec_type ``status``, no exec id."""
    return msgspec.structs.replace(
        report_of(market, r), exec_id=None, exec_type="status", last_qty=None,
        last_price=None, liquidity=None, trade_id=None, reason=None)


def cancel_rejected_of(market: Market, e: CancelRejected, order: Report | None
                       ) -> ExecutionReport:
    """The wire form of a refused cancel or amend; ``reason`` is the code.

    ``order`` is the account's open order the request named, as the
    open-orders view knows it at this event (None if it knows no such open
    order). A live order is stated as it is: its ``order_id``, current
    ``status`` (``new``/``partially_filled``) and fields. Without one the
    report echoes the request's ids with ``status`` ``rejected`` and None
    wherever the order is unknown.
    """
    if order is not None:
        return msgspec.structs.replace(
            report_of(market, order), exec_id=exec_id_of(market.symbol, e.seq),
            exec_type="cancel_rejected", last_qty=None, last_price=None, liquidity=None,
            trade_id=None, reason=e.reason, ts=e.ts)
    return ExecutionReport(
        exec_id=exec_id_of(market.symbol, e.seq),
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
    )


def push_frame(report: ExecutionReport) -> bytes:
    """The ``executions`` push carrying ``report``, as JSON bytes."""
    return encoder.encode(ExecutionPush(data=report))

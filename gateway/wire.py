"""JSON shapes the gateway sends (PROTOCOL.md), as msgspec Structs shared with the SDK.

Decimal strings only: these are the public, edge types; the engine's integer
types live in ``engine.messages``. Encode with :data:`encoder` (built once).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

WireExecType = Literal[
    "new", "trade", "canceled", "expired", "rejected", "replaced", "cancel_rejected", "status"
]
WireStatus = Literal["new", "partially_filled", "filled", "canceled", "expired", "rejected"]


class ExecutionReport(msgspec.Struct, frozen=True, gc=False):
    """One execution report: the ``data`` of an ``executions`` push or an ``orders.open`` item.

    ``exec_id`` is ``"<symbol>:<engine seq>"`` (None for ``status`` reports,
    which restate an order rather than report a change). ``price`` is None for
    market orders; ``last_qty``/``last_price``/``liquidity``/``trade_id`` are
    None unless ``exec_type`` is ``trade``; ``avg_price`` is None until a
    fill. A ``cancel_rejected`` report echoes the request's order ids and has
    None wherever the gateway does not know the order.
    """

    exec_id: str | None
    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: Literal["buy", "sell"] | None
    type: Literal["limit", "market"] | None
    tif: Literal["GTC", "IOC", "FOK"] | None
    price: str | None
    qty: str | None
    exec_type: WireExecType
    status: WireStatus
    last_qty: str | None
    last_price: str | None
    cum_qty: str | None
    leaves_qty: str | None
    avg_price: str | None
    liquidity: Literal["maker", "taker"] | None
    trade_id: int | None
    reason: str | None
    ts: int


class ExecutionPush(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """``{"channel": "executions", "type": "update", "data": <report>}``."""

    channel: str = "executions"
    type: str = "update"
    data: ExecutionReport


class ErrorBody(msgspec.Struct, frozen=True, gc=False):
    code: str
    message: str


class ErrorReply(msgspec.Struct, frozen=True, gc=False):
    id: int | str | None
    error: ErrorBody


class ResultReply(msgspec.Struct, frozen=True, gc=False):
    id: int | str
    result: Any


encoder = msgspec.json.Encoder()


def error_frame(request_id: int | str | None, code: str, message: str) -> bytes:
    """``{"id", "error": {"code", "message"}}`` as JSON bytes."""
    return encoder.encode(ErrorReply(request_id, ErrorBody(code, message)))


def result_frame(request_id: int | str, result: Any) -> bytes:
    """``{"id", "result"}`` as JSON bytes."""
    return encoder.encode(ResultReply(request_id, result))

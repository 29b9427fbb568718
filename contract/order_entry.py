"""The order-entry protocol (PROTOCOL.md, "Order entry"): request params and reports.

Each method's params are a Struct decoded strictly (unknown fields, wrong
JSON types and unknown enum values are refused with the field's path); the
gateway turns them into engine commands (``gateway.validation``). Execution
reports are what the gateway pushes and the SDK decodes. Decimal strings
only: these are the public edge types; the engine's integer types live in
``contract.commands`` and ``contract.events``. No I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contract.commands import OrderType, Side, StpMode, Tif
from contract.wire import INT64

WireExecType = Literal[
    "new", "trade", "canceled", "expired", "rejected", "replaced", "cancel_rejected", "status",
    "triggered",
]
WireStatus = Literal["new", "partially_filled", "filled", "canceled", "expired", "rejected",
                     "untriggered"]


class ExecutionReport(msgspec.Struct, frozen=True, gc=False):
    """One execution report: the ``data`` of an ``executions`` push or an ``orders.open`` item.

    ``exec_id`` is ``"<symbol>:<engine seq>"`` for a market's events and
    ``"acct-<K>:<risk seq>"`` for what risk shard K answered on the market's
    behalf (``INSUFFICIENT_FUNDS``); None for ``status`` reports, which
    restate an order rather than report a change. ``fee`` is what this fill
    cost the order, in ``fee_asset`` (the market's quote), formatted with the
    quote's decimals: zero on every report that is not a ``trade``. ``price`` is None for
    market orders; ``last_qty``/``last_price``/``liquidity``/``trade_id`` are
    None unless ``exec_type`` is ``trade``; ``avg_price`` is None until a
    fill. A ``cancel_rejected`` report of an order that is still open states
    it (its ``order_id``, current ``status`` and fields); otherwise its
    ``status`` is ``rejected``, it echoes the request's order ids and has
    None wherever the gateway does not know the order.

    ``stop_price`` (a price string), ``expire_time`` (ms) and ``display_qty`` (a
    quantity string) are present only on the orders that have them (a stop or
    take-profit, a ``GTD`` order, an iceberg): UNSET otherwise, which the encoder
    leaves out of the JSON. An untriggered stop has ``status`` ``untriggered``; the
    report of its trigger has ``exec_type`` ``triggered``.
    """

    exec_id: str | None
    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: Side | None
    type: OrderType | None
    tif: Tif | None
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
    fee: str
    fee_asset: str
    stop_price: str | msgspec.UnsetType = msgspec.UNSET
    expire_time: int | msgspec.UnsetType = msgspec.UNSET
    display_qty: str | msgspec.UnsetType = msgspec.UNSET


class ExecutionPush(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """``{"channel": "executions", "type": "update", "data": <report>}``."""

    channel: str = "executions"
    type: str = "update"
    data: ExecutionReport


# -- request params -----------------------------------------------------------------

CLIENT_ORDER_ID_PATTERN = r"\A[A-Za-z0-9_-]{1,36}\Z"
"""1..36 of ``[A-Za-z0-9_-]`` and nothing else: ``\\Z``, not ``$``, which would let a final
newline through (``"abc\\n"``); msgspec searches the pattern, so both ends are anchored."""
ClientOrderId = Annotated[str, msgspec.Meta(pattern=CLIENT_ORDER_ID_PATTERN)]
# Symbols, order ids and decimals have no length cap here: an overlong one is not
# listed / not an order / not a plain decimal and gets that specific code (the
# 64 KiB frame limit bounds them).
Symbol = str
OrderId = str
DecimalString = str


class _Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    pass


class NoParams(_Params, frozen=True):
    """``ping`` and ``markets`` take no parameters."""


class LogonParams(_Params, frozen=True):
    api_key: Annotated[str, msgspec.Meta(max_length=256)]
    timestamp: Annotated[int, INT64]
    signature: Annotated[str, msgspec.Meta(max_length=256)]
    cancel_on_disconnect: bool = False


class PlaceParams(_Params, frozen=True):
    """``qty`` is required except for a market (or stop/take-profit market) buy under the
    risk stage, which carries ``quote_qty`` (quote, fees included) instead;
    ``stop_price`` goes with the stop and take-profit types, ``expire_time`` (ms) with
    ``tif`` ``GTD``, ``display_qty`` (an iceberg's shown slice) with resting limit
    types. ``gateway.validation`` checks which combinations are allowed."""

    symbol: Symbol
    side: Side
    type: OrderType
    qty: DecimalString | msgspec.UnsetType = msgspec.UNSET
    price: DecimalString | None = None
    tif: Tif | None = None
    post_only: bool = False
    client_order_id: ClientOrderId | None = None
    stp: StpMode = "cancel_taker"
    quote_qty: DecimalString | msgspec.UnsetType = msgspec.UNSET
    stop_price: DecimalString | msgspec.UnsetType = msgspec.UNSET
    expire_time: Annotated[int, INT64] | msgspec.UnsetType = msgspec.UNSET
    display_qty: DecimalString | msgspec.UnsetType = msgspec.UNSET


class CancelParams(_Params, frozen=True):
    symbol: Symbol
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None


class AmendParams(_Params, frozen=True):
    """``stop_price`` changes an untriggered stop's trigger (None: unchanged)."""

    symbol: Symbol
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None
    qty: DecimalString | None = None
    price: DecimalString | None = None
    stop_price: DecimalString | None = None


class SymbolParams(_Params, frozen=True):
    """``order.cancel_all`` and ``orders.open``: an optional symbol (None = every market)."""

    symbol: Symbol | None = None


class BalancesParams(_Params, frozen=True):
    """``account.balances``: one asset, or None for every asset the account has touched."""

    asset: str | None = None


Params = (NoParams | LogonParams | PlaceParams | CancelParams | AmendParams | SymbolParams
          | BalancesParams)


# -- balances (risk stage) -------------------------------------------------------------


class AssetBalance(msgspec.Struct, frozen=True, gc=False):
    """One asset of an ``account.balances`` result: amounts with the asset's decimals."""

    asset: str
    available: str
    held: str


class BalancesResult(msgspec.Struct, frozen=True, gc=False):
    """``{"balances": [...]}``, by asset name."""

    balances: list[AssetBalance]


class BalanceUpdate(msgspec.Struct, frozen=True, gc=False):
    """The ``data`` of a ``balances`` push: an asset's balance after a committed change."""

    asset: str
    available: str
    held: str
    ts: int


class BalancePush(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """``{"channel": "balances", "type": "update", "data": <balance>}``."""

    channel: str = "balances"
    type: str = "update"
    data: BalanceUpdate

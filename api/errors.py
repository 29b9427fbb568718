"""Binance's error codes and the one conversion from streamex's errors to them.

Every refusal of the REST service is a :class:`BinanceError`: Binance's
``{"code": -1121, "msg": "Invalid symbol."}`` body with the HTTP status
Binance gives it (400 for a malformed request, 401 for a bad API key, 429
with ``Retry-After`` for a rate limit, 503 when the outcome is unknown).
Binance's codes are fixed; its messages "can vary", so where streamex knows
more (which field, which limit) the message says it after Binance's text.
:func:`from_streamex` maps a ``StreamexError`` of the order-entry checks
(``gateway.entry``) to Binance's code. No I/O.
"""

from __future__ import annotations

import math

from contract.errors import (
    BAD_REQUEST,
    DUPLICATE_CLIENT_ORDER_ID,
    FOK_UNFILLABLE,
    INSUFFICIENT_FUNDS,
    INTERNAL,
    INVALID_EXPIRE_TIME,
    INVALID_LOT,
    INVALID_PRICE,
    INVALID_QTY,
    INVALID_STOP_PRICE,
    INVALID_TICK,
    OVERLOADED,
    POST_ONLY_WOULD_TAKE,
    RATE_LIMITED,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    StreamexError,
)

UNKNOWN = -1000
TOO_MANY_REQUESTS = -1003
TIMEOUT = -1007
SERVER_BUSY = -1008
INVALID_MESSAGE = -1013
TOO_MANY_ORDERS = -1015
UNSUPPORTED_OPERATION = -1020
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
TOO_MANY_PARAMETERS = -1101
MANDATORY_PARAM = -1102
UNREAD_PARAMETERS = -1104
PARAM_EMPTY = -1105
PARAM_NOT_REQUIRED = -1106
BAD_PRECISION = -1111
TIF_NOT_REQUIRED = -1114
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
EMPTY_NEW_CL_ORD_ID = -1118
EMPTY_ORG_CL_ORD_ID = -1119
BAD_INTERVAL = -1120
BAD_SYMBOL = -1121
INVALID_SYMBOL_STATUS = -1122
MORE_THAN_XX_HOURS = -1127
OPTIONAL_PARAMS_BAD_COMBO = -1128
INVALID_PARAMETER = -1130
INVALID_CANCEL_RESTRICTIONS = -1145
SYMBOL_STATUS_MISMATCH = -1220
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015

UNKNOWN_ORDER_SENT = "Unknown order sent."
UNSUPPORTED_COMBINATION = "Unsupported order combination"
"""-1013's message for an orderType, timeInForce, stopPrice and icebergQty that do not go
together (Binance's "Failures during order placement")."""
ORDER_DOES_NOT_EXIST = "Order does not exist."
STATUS_UNKNOWN = ("Timeout waiting for response from backend server. Send status unknown; "
                  "execution status unknown.")

# Reasons of a ``rejected`` report (or a refusal) -> Binance's -2010 message.
REJECT_MESSAGES = {
    INSUFFICIENT_FUNDS: "Account has insufficient balance for requested action.",
    POST_ONLY_WOULD_TAKE: "Order would immediately match and take.",
    DUPLICATE_CLIENT_ORDER_ID: "Duplicate order sent.",
    FOK_UNFILLABLE: "Order would not fill completely.",
}


class BinanceError(Exception):
    """A refusal as Binance words it: ``code``, ``msg``, the HTTP ``status``, and
    ``retry_after_s`` (the ``Retry-After`` header of a 429/503) when it applies."""

    def __init__(self, code: int, msg: str, status: int = 400,
                 retry_after_s: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, int | str]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> BinanceError:
    """-1102 for a parameter that was not sent or is empty."""
    return BinanceError(MANDATORY_PARAM,
                        f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                        "malformed.")


def illegal_chars(name: str, legal: str) -> BinanceError:
    """-1100 for a value outside the parameter's syntax."""
    return BinanceError(ILLEGAL_CHARS,
                        f"Illegal characters found in parameter '{name}'; legal range is "
                        f"'{legal}'.")


def invalid_parameter(name: str, why: str = "") -> BinanceError:
    """-1130 for a well-formed value that is not valid here."""
    return BinanceError(INVALID_PARAMETER,
                        f"Data sent for parameter '{name}' is not valid.{why}")


def not_required(name: str, why: str = "") -> BinanceError:
    """-1106 for a parameter this kind of request does not take."""
    return BinanceError(PARAM_NOT_REQUIRED, f"Parameter '{name}' sent when not required.{why}")


def invalid_symbol() -> BinanceError:
    return BinanceError(BAD_SYMBOL, "Invalid symbol.")


def status_unknown(why: str = "") -> BinanceError:
    """-1007 with HTTP 503: the request may or may not have been executed (check first)."""
    return BinanceError(TIMEOUT, STATUS_UNKNOWN + why, status=503)


def rejected(reason: str | None) -> BinanceError:
    """-2010 for an order the engine or the risk stage rejected with ``reason``."""
    msg = REJECT_MESSAGES.get(reason or "", f"Order rejected: {reason}.")
    return BinanceError(NEW_ORDER_REJECTED, msg)


_FIELDS = (("params.stop_price", "stopPrice"), ("params.display_qty", "icebergQty"),
           ("params.expire_time", "goodTillDate"), ("stop_price", "stopPrice"),
           ("display_qty", "icebergQty"), ("expire_time", "goodTillDate"),
           ("params.quote_qty", "quoteOrderQty"), ("params.qty", "quantity"),
           ("params.price", "price"), ("params.client_order_id", "newClientOrderId"),
           ("params.tif", "timeInForce"), ("params.symbol", "symbol"),
           ("params.post_only", "LIMIT_MAKER"), ("quote_qty", "quoteOrderQty"))
"""The websocket protocol's field names in streamex's messages -> Binance's parameters."""


def _binance_words(message: str) -> str:
    for ours, theirs in _FIELDS:
        message = message.replace(ours, theirs)
    return message


def from_streamex(exc: StreamexError, *, cancel: bool = False) -> BinanceError:
    """The Binance refusal of an order-entry check's ``StreamexError``.

    ``cancel``: the request was a cancel (-2011 rather than -2010 for business refusals).
    Filter failures keep streamex's detail after Binance's text, e.g.
    ``Filter failure: LOT_SIZE (quantity: must be a multiple of 0.0001)``; a stop price
    off the grid or band is a ``PRICE_FILTER`` failure (Binance filters ``stopPrice``
    like ``price``), an expire time not in the future an invalid ``goodTillDate``
    (-1130).
    """
    code, detail = exc.code, _binance_words(exc.message)
    if code in (INVALID_QTY, INVALID_LOT):
        which = "NOTIONAL" if "quoteOrderQty" in detail else "LOT_SIZE"
        return BinanceError(INVALID_MESSAGE, f"Filter failure: {which} ({detail})")
    if code in (INVALID_PRICE, INVALID_TICK, INVALID_STOP_PRICE):
        return BinanceError(INVALID_MESSAGE, f"Filter failure: PRICE_FILTER ({detail})")
    if code == INVALID_EXPIRE_TIME:
        return invalid_parameter("goodTillDate", f" ({detail})")
    if code == UNKNOWN_SYMBOL:
        return invalid_symbol()
    if code == RATE_LIMITED:
        retry_s = max(1, math.ceil((exc.retry_after_ms or 1000) / 1000))
        return BinanceError(TOO_MANY_ORDERS, f"Too many new orders; {detail}", status=429,
                            retry_after_s=retry_s)
    if code == OVERLOADED:
        return BinanceError(SERVER_BUSY, "Server is currently overloaded with other requests. "
                            f"Please try again in a few minutes. ({detail}; not placed)",
                            status=503, retry_after_s=1)
    if code == UNKNOWN_ORDER:
        return BinanceError(CANCEL_REJECTED, UNKNOWN_ORDER_SENT)
    if code in REJECT_MESSAGES:
        return BinanceError(CANCEL_REJECTED if cancel else NEW_ORDER_REJECTED,
                            REJECT_MESSAGES[code])
    if code == BAD_REQUEST:
        return BinanceError(INVALID_MESSAGE, f"The request is rejected by the API. ({detail})")
    if code == INTERNAL:
        return BinanceError(UNKNOWN, "An unknown error occurred while processing the request.",
                            status=500)
    return BinanceError(NEW_ORDER_REJECTED if not cancel else CANCEL_REJECTED,
                        f"{code}: {detail}")

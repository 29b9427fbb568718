"""Error and reason codes of the public protocol (PROTOCOL.md), in one place.

Every rejection anywhere in streamex names one of these codes; services turn
them into ``{"error": {"code", "message", ...}}`` replies or into the ``reason`` of
an execution report. Nothing else is ever shown to a peer. Each code is ``Final``, so
the compiled matching core (``setup.py``) has it inlined instead of looked up.
"""

from __future__ import annotations

from typing import Final

BAD_REQUEST: Final = "BAD_REQUEST"
UNKNOWN_METHOD: Final = "UNKNOWN_METHOD"
UNAUTHENTICATED: Final = "UNAUTHENTICATED"
UNKNOWN_SYMBOL: Final = "UNKNOWN_SYMBOL"
INVALID_QTY: Final = "INVALID_QTY"
INVALID_PRICE: Final = "INVALID_PRICE"
INVALID_TICK: Final = "INVALID_TICK"
INVALID_LOT: Final = "INVALID_LOT"
DUPLICATE_CLIENT_ORDER_ID: Final = "DUPLICATE_CLIENT_ORDER_ID"
UNKNOWN_ORDER: Final = "UNKNOWN_ORDER"
RATE_LIMITED: Final = "RATE_LIMITED"
OVERLOADED: Final = "OVERLOADED"
INVALID_STOP_PRICE: Final = "INVALID_STOP_PRICE"
"""A stop's ``stop_price`` off the tick grid or outside the market's price band."""
INVALID_EXPIRE_TIME: Final = "INVALID_EXPIRE_TIME"
"""A ``GTD`` order's ``expire_time`` missing, not in the future, or given without ``GTD``."""
INSUFFICIENT_FUNDS: Final = "INSUFFICIENT_FUNDS"
"""A hold (order, amend) or a withdrawal that does not fit in the account's available."""
INTERNAL: Final = "INTERNAL"

# Reasons that appear only in execution reports.
POST_ONLY_WOULD_TAKE: Final = "POST_ONLY_WOULD_TAKE"
FOK_UNFILLABLE: Final = "FOK_UNFILLABLE"
NO_LIQUIDITY: Final = "NO_LIQUIDITY"
STP: Final = "STP"
USER_CANCEL: Final = "USER_CANCEL"
CANCEL_ON_DISCONNECT: Final = "CANCEL_ON_DISCONNECT"
EXPIRED: Final = "EXPIRED"
"""A ``GTD`` order the market's clock reached ``expire_time`` of."""

ERROR_CODES = frozenset(
    {
        BAD_REQUEST,
        UNKNOWN_METHOD,
        UNAUTHENTICATED,
        UNKNOWN_SYMBOL,
        INVALID_QTY,
        INVALID_PRICE,
        INVALID_TICK,
        INVALID_LOT,
        DUPLICATE_CLIENT_ORDER_ID,
        UNKNOWN_ORDER,
        RATE_LIMITED,
        OVERLOADED,
        INSUFFICIENT_FUNDS,
        INVALID_STOP_PRICE,
        INVALID_EXPIRE_TIME,
        INTERNAL,
    }
)
REASON_CODES = ERROR_CODES | {
    POST_ONLY_WOULD_TAKE,
    FOK_UNFILLABLE,
    NO_LIQUIDITY,
    STP,
    USER_CANCEL,
    CANCEL_ON_DISCONNECT,
    EXPIRED,
}


# Why a logon failed (the ``reason`` of its UNAUTHENTICATED error body).
UNKNOWN_KEY: Final = "UNKNOWN_KEY"
BAD_SIGNATURE: Final = "BAD_SIGNATURE"
TIMESTAMP_OUT_OF_WINDOW: Final = "TIMESTAMP_OUT_OF_WINDOW"

LOGON_REASONS = frozenset({UNKNOWN_KEY, BAD_SIGNATURE, TIMESTAMP_OUT_OF_WINDOW})


class StreamexError(Exception):
    """A rejection with a protocol error code; ``str()`` is the peer-safe message.

    Raised by validation at the edges (market parsing, gateway, feed) and
    converted to an error reply in exactly one place per service. The
    optional details become additive fields of the error body (PROTOCOL.md,
    "Error replies"): ``retry_after_ms`` (RATE_LIMITED), ``reason`` and
    ``server_time`` (a failed logon); None leaves the field out.
    """

    def __init__(self, code: str, message: str, *, retry_after_ms: int | None = None,
                 reason: str | None = None, server_time: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.reason = reason
        self.server_time = server_time

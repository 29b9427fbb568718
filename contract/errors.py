"""Error and reason codes of the public protocol (PROTOCOL.md), in one place.

Every rejection anywhere in streamex names one of these codes; services turn
them into ``{"error": {"code", "message", ...}}`` replies or into the ``reason`` of
an execution report. Nothing else is ever shown to a peer.
"""

from __future__ import annotations

BAD_REQUEST = "BAD_REQUEST"
UNKNOWN_METHOD = "UNKNOWN_METHOD"
UNAUTHENTICATED = "UNAUTHENTICATED"
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
INVALID_QTY = "INVALID_QTY"
INVALID_PRICE = "INVALID_PRICE"
INVALID_TICK = "INVALID_TICK"
INVALID_LOT = "INVALID_LOT"
DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
UNKNOWN_ORDER = "UNKNOWN_ORDER"
RATE_LIMITED = "RATE_LIMITED"
OVERLOADED = "OVERLOADED"
INVALID_STOP_PRICE = "INVALID_STOP_PRICE"
"""A stop's ``stop_price`` off the tick grid or outside the market's price band."""
INVALID_EXPIRE_TIME = "INVALID_EXPIRE_TIME"
"""A ``GTD`` order's ``expire_time`` missing, not in the future, or given without ``GTD``."""
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
"""A hold (order, amend) or a withdrawal that does not fit in the account's available."""
INTERNAL = "INTERNAL"

# Reasons that appear only in execution reports.
POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
FOK_UNFILLABLE = "FOK_UNFILLABLE"
NO_LIQUIDITY = "NO_LIQUIDITY"
STP = "STP"
USER_CANCEL = "USER_CANCEL"
CANCEL_ON_DISCONNECT = "CANCEL_ON_DISCONNECT"
EXPIRED = "EXPIRED"
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
UNKNOWN_KEY = "UNKNOWN_KEY"
BAD_SIGNATURE = "BAD_SIGNATURE"
TIMESTAMP_OUT_OF_WINDOW = "TIMESTAMP_OUT_OF_WINDOW"

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

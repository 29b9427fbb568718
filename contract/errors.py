"""Error and reason codes of the public protocol (PROTOCOL.md), in one place.

Every rejection anywhere in streamex names one of these codes; services turn
them into ``{"error": {"code", "message"}}`` replies or into the ``reason`` of
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
INTERNAL = "INTERNAL"

# Reasons that appear only in execution reports.
POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
FOK_UNFILLABLE = "FOK_UNFILLABLE"
NO_LIQUIDITY = "NO_LIQUIDITY"
STP = "STP"
USER_CANCEL = "USER_CANCEL"
CANCEL_ON_DISCONNECT = "CANCEL_ON_DISCONNECT"

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
}


class StreamexError(Exception):
    """A rejection with a protocol error code; ``str()`` is the peer-safe message.

    Raised by validation at the edges (market parsing, gateway, feed) and
    converted to an error reply in exactly one place per service.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

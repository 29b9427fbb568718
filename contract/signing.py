"""Request signatures: HMAC-SHA256 with the account's secret, the one implementation.

The websocket logon signs ``f"{timestamp}{api_key}"`` (PROTOCOL.md,
``logon``); the server recomputes the signature and compares it in constant
time (``gateway.auth``); the SDK, the load generator and the tests sign with
the same function. Cost: one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac


def hmac_hex(secret: str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed by ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, api_key: str) -> str:
    """The logon signature: :func:`hmac_hex` of ``f"{timestamp}{api_key}"``."""
    return hmac_hex(secret, f"{timestamp}{api_key}")


def same_signature(expected: str, given: str) -> bool:
    """Constant-time comparison; hex digits are accepted in either case."""
    given = given.lower() if given.isascii() else ""
    return hmac.compare_digest(expected, given)

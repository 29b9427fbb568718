"""Logon: HMAC-SHA256 signatures over ``f"{timestamp}{api_key}"``, checked without I/O.

The client signs the current time (ms) and its key with the account's secret;
the gateway recomputes the signature and accepts it within ``WINDOW_MS`` of its
own clock. A signature stays valid for the whole window (as on Binance's
signed requests), so keep logons on TLS in production. Cost: one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from engine.errors import UNAUTHENTICATED, StreamexError
from streamex.config import Account

WINDOW_MS = 30_000
"""How far (either way) a logon timestamp may be from the server's clock."""


def sign(secret: str, timestamp: int, api_key: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``f"{timestamp}{api_key}"`` keyed by ``secret``."""
    message = f"{timestamp}{api_key}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_logon(accounts_by_api_key: Mapping[str, Account], api_key: str, timestamp: int,
                 signature: str, now_ms: int, window_ms: int = WINDOW_MS) -> Account:
    """The account a logon proves, or raise StreamexError UNAUTHENTICATED.

    The three failures (unknown key, stale timestamp, bad signature) share one
    message so a peer cannot probe which keys exist. The signature is compared
    in constant time; hex digits are accepted in either case.
    """
    account = accounts_by_api_key.get(api_key)
    ok = account is not None and abs(now_ms - timestamp) <= window_ms
    if account is not None:
        expected = sign(account.secret, timestamp, api_key)
        given = signature.lower() if signature.isascii() else ""
        ok = hmac.compare_digest(expected, given) and ok
    if not ok or account is None:
        raise StreamexError(
            UNAUTHENTICATED,
            "logon: unknown api_key, bad signature, or timestamp not within "
            f"{window_ms // 1000} s of server time",
        )
    return account

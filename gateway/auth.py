"""Logon: HMAC-SHA256 signatures (``contract.signing``) checked without I/O.

The client signs the current time (ms) and its key with the account's secret;
the gateway recomputes the signature and accepts it within ``WINDOW_MS`` of its
own clock. A signature stays valid for the whole window (as on Binance's
signed requests), so keep logons on TLS in production. Cost: one HMAC.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.errors import UNAUTHENTICATED, StreamexError
from contract.settings import Account
from contract.signing import same_signature, sign

WINDOW_MS = 30_000
"""How far (either way) a logon timestamp may be from the server's clock."""


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
        ok = same_signature(sign(account.secret, timestamp, api_key), signature) and ok
    if not ok or account is None:
        raise StreamexError(
            UNAUTHENTICATED,
            "logon: unknown api_key, bad signature, or timestamp not within "
            f"{window_ms // 1000} s of server time",
        )
    return account

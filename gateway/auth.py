"""Logon: HMAC-SHA256 signatures (``contract.signing``) checked without I/O.

The client signs the current time (ms) and its key with the account's secret;
the gateway recomputes the signature and accepts it within ``WINDOW_MS`` of its
own clock. A signature stays valid for the whole window (as on Binance's
signed requests), so keep logons on TLS in production. Cost: one HMAC.

A refused logon says which check failed (as Binance's -1021/-1022 do): the
error's ``reason`` is ``UNKNOWN_KEY``, ``BAD_SIGNATURE`` or
``TIMESTAMP_OUT_OF_WINDOW`` and it carries the ``server_time``, so a client
can fix its key, its secret or its clock. (This tells a peer whether an
api_key exists; the per-connection rate limit bounds how fast it can ask.)
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.errors import (
    BAD_SIGNATURE,
    TIMESTAMP_OUT_OF_WINDOW,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
    StreamexError,
)
from contract.settings import Account
from contract.signing import same_signature, sign

WINDOW_MS = 30_000
"""How far (either way) a logon timestamp may be from the server's clock."""


def verify_logon(accounts_by_api_key: Mapping[str, Account], api_key: str, timestamp: int,
                 signature: str, now_ms: int, window_ms: int = WINDOW_MS) -> Account:
    """The account a logon proves, or raise StreamexError UNAUTHENTICATED with a ``reason``.

    Checked in this order: the key (UNKNOWN_KEY), the signature, compared in
    constant time, hex digits in either case (BAD_SIGNATURE), then the
    timestamp (TIMESTAMP_OUT_OF_WINDOW): only a peer that holds the secret
    learns that its clock is off. The error's ``server_time`` is ``now_ms``.
    """
    account = accounts_by_api_key.get(api_key)
    if account is None:
        raise _refused(UNKNOWN_KEY, "no account has this api_key", now_ms)
    if not same_signature(sign(account.secret, timestamp, api_key), signature):
        raise _refused(BAD_SIGNATURE, "signature is not the lowercase hex HMAC-SHA256 of "
                       "f\"{timestamp}{api_key}\" by the account's secret", now_ms)
    skew = timestamp - now_ms
    if abs(skew) > window_ms:
        raise _refused(TIMESTAMP_OUT_OF_WINDOW,
                       f"timestamp {timestamp} is {abs(skew)} ms "
                       f"{'ahead of' if skew > 0 else 'behind'} server time; "
                       f"allowed: {window_ms} ms", now_ms)
    return account


def _refused(reason: str, why: str, now_ms: int) -> StreamexError:
    return StreamexError(UNAUTHENTICATED, f"logon: {reason}: {why}; server_time {now_ms}",
                         reason=reason, server_time=now_ms)

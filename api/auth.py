"""Binance's SIGNED requests: the API key header, the HMAC signature, the time window.

A signed request names its account by the ``X-MBX-APIKEY`` header (an
account's ``api_key`` in the configuration) and carries ``signature``, the
hex HMAC-SHA256 of the request's ``totalParams`` (raw query string followed
by the raw form body, without the signature) keyed by the account's secret
(``contract.signing.hmac_hex``), compared in constant time and in either
case. ``timestamp`` (ms, or µs when it has 16 digits) must satisfy Binance's
rule ``timestamp < now + 1000 and now - timestamp <= recvWindow``;
``recvWindow`` defaults to 5,000 ms and may not exceed ``[api]
max_recv_window_ms``.

Checked in this order, each with Binance's code: the key (-2014 absent or
malformed, -2015 unknown, HTTP 401), the signature (-1102 absent, -1022
wrong), then the time (-1102/-1100 for ``timestamp``, -1102 for a
``recvWindow`` above the maximum, -1021 outside the window): only a client
holding the secret learns that its clock is off. Cost: one HMAC. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from api.errors import (
    BAD_API_KEY_FMT,
    INVALID_SIGNATURE,
    INVALID_TIMESTAMP,
    MANDATORY_PARAM,
    REJECTED_MBX_KEY,
    BinanceError,
    illegal_chars,
    mandatory,
)
from api.params import LONG_RANGE, Params
from contract.settings import Account
from contract.signing import hmac_hex, same_signature

API_KEY_HEADER = "X-MBX-APIKEY"
DEFAULT_RECV_WINDOW_MS = 5000
AHEAD_MS = 1000
"""How far ahead of the server's clock a timestamp may be (Binance's rule)."""
_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_RECV_WINDOW = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,3})?")
_TIMESTAMP = re.compile(r"[0-9]{1,20}")
_MICROS = 10**15
"""Timestamps at or above this are microseconds."""


def authenticate(accounts_by_api_key: Mapping[str, Account], api_key: str | None,
                 params: Params, payload: str, signature: str | None, now_ms: int,
                 max_recv_window_ms: int) -> Account:
    """The account a signed request proves, or raise its BinanceError (see the module).

    ``payload`` and ``signature`` come from ``api.params.signature_payload``;
    ``timestamp`` and ``recvWindow`` are read from ``params``.
    """
    if api_key is None or not _KEY.fullmatch(api_key):
        raise BinanceError(BAD_API_KEY_FMT, "API-key format invalid.", status=401)
    account = accounts_by_api_key.get(api_key)
    if account is None:
        raise BinanceError(REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action.",
                           status=401)
    params.raw("signature")
    if not signature:
        raise mandatory("signature")
    if not same_signature(hmac_hex(account.secret, payload), signature):
        raise BinanceError(INVALID_SIGNATURE, "Signature for this request is not valid.")
    text = params.text("timestamp", required=True)
    assert text is not None
    if not _TIMESTAMP.fullmatch(text):
        raise illegal_chars("timestamp", LONG_RANGE)
    timestamp = Decimal(text) / 1000 if int(text) >= _MICROS else Decimal(text)
    window = Decimal(DEFAULT_RECV_WINDOW_MS)
    recv = params.text("recvWindow")
    if recv is not None:
        if not _RECV_WINDOW.fullmatch(recv):
            raise illegal_chars("recvWindow", r"^[0-9]{1,10}(\.[0-9]{1,3})?$")
        window = Decimal(recv)
        if window > max_recv_window_ms:
            raise BinanceError(MANDATORY_PARAM,
                               "'recvWindow' contains unexpected value. Cannot be greater "
                               f"than '{max_recv_window_ms}'.")
    if timestamp >= now_ms + AHEAD_MS:
        raise BinanceError(INVALID_TIMESTAMP,
                           f"Timestamp for this request was {AHEAD_MS}ms ahead of the "
                           f"server's time. (timestamp {text}, serverTime {now_ms})")
    if now_ms - timestamp > window:
        raise BinanceError(INVALID_TIMESTAMP,
                           "Timestamp for this request is outside of the recvWindow. "
                           f"(timestamp {text}, serverTime {now_ms}, recvWindow {window})")
    return account

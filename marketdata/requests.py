"""Market-data requests (PROTOCOL.md): frames -> typed requests, or a coded refusal.

Sans-I/O. :func:`parse_request` reads the common envelope
(``contract.wire``; here ``id`` may be left out) and the params of the
method, with the same field-named messages as the gateway, and raises
``RequestError`` carrying the protocol code and the request id (None when it
could not be read). The caller sends the error reply and keeps the
connection open. Cost: one JSON decode of the frame.
"""

from __future__ import annotations

import msgspec

from candles.core import INTERVALS
from contract import errors
from contract.market_data import DEFAULT_DEPTH, DEPTHS, SubscriptionParams
from contract.wire import RequestError, decode_envelope, decode_params, quote

METHODS = ("ping", "markets", "subscribe", "unsubscribe")


class Request(msgspec.Struct, frozen=True):
    """A well-formed request: ``params`` is None for ``ping`` and ``markets``."""

    id: int | str | None
    method: str
    params: SubscriptionParams | None = None


_params_decoder = msgspec.json.Decoder(SubscriptionParams)


def parse_request(frame: str | bytes, symbols: frozenset[str] | set[str]) -> Request:
    """Decode and validate one frame; raise ``RequestError`` if it is not a good request.

    Codes: BAD_REQUEST (not JSON, not an object, bad ``id``/``method``/params
    types, unknown channel, bad depth, an interval not served or missing on a
    ``candles`` subscribe), UNKNOWN_METHOD, UNKNOWN_SYMBOL. An ``unsubscribe``
    of ``candles`` without ``interval`` means every interval of the symbol.
    """
    env = decode_envelope(frame, require_id=False)
    rid = env.id
    method = env.method
    if method not in METHODS:
        raise RequestError(errors.UNKNOWN_METHOD,
                           f"method: no method named {quote(method)}; expected one of "
                           f"{', '.join(METHODS)}", rid)
    if method in ("ping", "markets"):
        if env.params is not msgspec.UNSET and bytes(env.params).strip() not in (b"{}", b"null"):
            raise RequestError(errors.BAD_REQUEST, f"params: {method} takes no params", rid)
        return Request(rid, method)
    if env.params is msgspec.UNSET:
        raise RequestError(errors.BAD_REQUEST, "params: required", rid)
    params = decode_params(env, _params_decoder)
    if params.symbol not in symbols:
        raise RequestError(errors.UNKNOWN_SYMBOL,
                           f"params.symbol: {quote(params.symbol)} is not listed", rid)
    if params.channel == "book":
        if params.depth is None and method == "subscribe":
            params = SubscriptionParams("book", params.symbol, DEFAULT_DEPTH)
        elif params.depth is not None and params.depth not in DEPTHS:
            raise RequestError(errors.BAD_REQUEST,
                               f"params.depth: must be one of {', '.join(map(str, DEPTHS))}", rid)
    elif params.depth is not None:
        raise RequestError(errors.BAD_REQUEST, "params.depth: only for channel book", rid)
    if params.channel == "candles":
        if params.interval is None:
            if method == "subscribe":
                raise RequestError(errors.BAD_REQUEST, "params.interval: required for channel "
                                   f"candles, one of {', '.join(INTERVALS)}", rid)
        elif params.interval not in INTERVALS:
            raise RequestError(errors.BAD_REQUEST,
                               f"params.interval: {quote(params.interval)} is not one of "
                               f"{', '.join(INTERVALS)}", rid)
    elif params.interval is not None:
        raise RequestError(errors.BAD_REQUEST, "params.interval: only for channel candles", rid)
    return Request(rid, method, params)

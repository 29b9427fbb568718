"""Parsing and validation of market-data requests (PROTOCOL.md): frames -> typed requests.

Sans-I/O. :func:`parse_request` turns one websocket frame into a
:class:`Request` or raises :class:`RequestError` carrying the protocol error
code and the request id (None when it could not be read). The caller sends the
error reply and keeps the connection open. Cost: one JSON decode of the frame.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine import errors
from marketdata.l2book import DEPTHS

Channel = Literal["trades", "book", "ticker"]
METHODS = ("ping", "markets", "subscribe", "unsubscribe")
DEFAULT_DEPTH = 10


class RequestError(Exception):
    """A request that gets an error reply (the connection stays open)."""

    def __init__(self, request_id: int | str | None, code: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.code = code
        self.message = message


class _Envelope(msgspec.Struct):
    """The outer shape of every request; fields are checked one by one after decoding."""

    id: Any = None
    method: Any = msgspec.UNSET
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class SubscriptionParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``{"channel", "symbol", "depth"?}`` of ``subscribe`` and ``unsubscribe``."""

    channel: Channel
    symbol: str
    depth: int | None = None


class Request(msgspec.Struct, frozen=True):
    """A well-formed request: ``params`` is None for ``ping`` and ``markets``."""

    id: int | str | None
    method: str
    params: SubscriptionParams | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_params_decoder = msgspec.json.Decoder(SubscriptionParams)


def parse_request(frame: str | bytes, symbols: frozenset[str] | set[str]) -> Request:
    """Decode and validate one frame; raise :class:`RequestError` if it is not a good request.

    Codes: BAD_REQUEST (not JSON, not an object, bad ``id``/``method``/params
    types, unknown channel, bad depth), UNKNOWN_METHOD, UNKNOWN_SYMBOL.
    """
    if isinstance(frame, bytes):
        raise RequestError(None, errors.BAD_REQUEST, "requests are JSON text frames")
    try:
        env = _envelope_decoder.decode(frame)
    except msgspec.ValidationError:
        raise RequestError(None, errors.BAD_REQUEST, "a request must be a JSON object") from None
    except msgspec.DecodeError:
        raise RequestError(None, errors.BAD_REQUEST, "not valid JSON") from None
    rid = env.id
    if rid is not None and (type(rid) is not int and type(rid) is not str):
        raise RequestError(None, errors.BAD_REQUEST, "id: must be an integer or a string")
    method = env.method
    if method is msgspec.UNSET:
        raise RequestError(rid, errors.BAD_REQUEST, "method: required")
    if type(method) is not str:
        raise RequestError(rid, errors.BAD_REQUEST, "method: must be a string")
    if method not in METHODS:
        raise RequestError(rid, errors.UNKNOWN_METHOD,
                           f"unknown method {method[:64]!r}; expected one of {', '.join(METHODS)}")
    if method in ("ping", "markets"):
        if env.params is not msgspec.UNSET and bytes(env.params).strip() not in (b"{}", b"null"):
            raise RequestError(rid, errors.BAD_REQUEST, f"params: {method} takes no params")
        return Request(rid, method)
    if env.params is msgspec.UNSET:
        raise RequestError(rid, errors.BAD_REQUEST, "params: required")
    try:
        params = _params_decoder.decode(env.params)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        message = str(exc).replace("`$`", "`params`").replace("`$.", "`params.")
        raise RequestError(rid, errors.BAD_REQUEST, message) from None
    if params.symbol not in symbols:
        raise RequestError(rid, errors.UNKNOWN_SYMBOL,
                           f"symbol: {params.symbol[:32]!r} is not listed")
    if params.channel == "book":
        if params.depth is None and method == "subscribe":
            params = SubscriptionParams("book", params.symbol, DEFAULT_DEPTH)
        elif params.depth is not None and params.depth not in DEPTHS:
            raise RequestError(rid, errors.BAD_REQUEST,
                               f"params.depth: must be one of {', '.join(map(str, DEPTHS))}")
    elif params.depth is not None:
        raise RequestError(rid, errors.BAD_REQUEST, "params.depth: only for channel book")
    return Request(rid, method, params)


def params_to_wire(params: SubscriptionParams) -> dict[str, Any]:
    """The params echoed in ``subscribed``/``unsubscribed`` results (no null depth)."""
    out: dict[str, Any] = {"channel": params.channel, "symbol": params.symbol}
    if params.depth is not None:
        out["depth"] = params.depth
    return out

"""The JSON envelope both websocket services speak (PROTOCOL.md, "Conventions").

- Request ``{"id", "method", "params"?}``: :func:`decode_envelope` reads it
  with params left raw; :func:`decode_params` decodes them for the method.
- Success ``{"id", "result"}`` (:func:`result_frame`) and failure
  ``{"id", "error": {"code", "message"}}`` (:func:`error_frame`,
  :func:`error_frame_of`), whose body may carry additive detail fields:
  ``retry_after_ms`` (RATE_LIMITED), ``reason`` and ``server_time`` (a failed
  logon). A field without a value is left out, so a plain error is exactly
  ``{"code", "message"}`` and a client that reads only those is unaffected.
- :class:`RequestError` is the one refusal: a protocol code, a peer-safe
  message naming the field (``params.qty: expected `str`, got `int```, made
  from msgspec's error path by :func:`describe`) and the request id to echo
  (None when it could not be read). Nothing else escapes for any input.

Sans-I/O; encoders and decoders are built once. Cost: O(frame length).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeAlias, TypeVar

import msgspec

from contract.errors import BAD_REQUEST, StreamexError

MAX_ID_LENGTH = 64
"""Longest string request id echoed back; longer ones get ``id`` null."""

MAX_METHOD_LENGTH = 64

INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)
RequestId: TypeAlias = (
    Annotated[int, INT64] | Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
)


class RequestError(StreamexError):
    """A request refused with a protocol code; ``request_id`` is echoed (None if unreadable)."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None, *,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(code, message, retry_after_ms=retry_after_ms)
        self.request_id = request_id


# -- requests ---------------------------------------------------------------------


class Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``{"id", "method", "params"?}``; ``params`` is decoded once the method is known.

    ``params`` is ``UNSET`` when the frame has none (``null`` is kept raw: a
    method that takes params refuses it).
    """

    method: Annotated[str, msgspec.Meta(max_length=MAX_METHOD_LENGTH)]
    id: RequestId | None = None
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_envelope_decoder = msgspec.json.Decoder(Envelope)
_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError)
P = TypeVar("P")


def decode_envelope(frame: str | bytes, *, require_id: bool = True) -> Envelope:
    """Decode ``{"id", "method", "params"?}`` of one frame; params stay raw.

    Raises :class:`RequestError` BAD_REQUEST (binary frame, not JSON, not an
    object, wrong shape, a bad ``id``, no ``id`` when ``require_id``) with
    the id when it could be read.
    """
    if not isinstance(frame, str):
        raise RequestError(BAD_REQUEST, "binary frames are not accepted: send JSON text frames")
    try:
        envelope = _envelope_decoder.decode(frame)
    except _ERRORS as exc:
        raise RequestError(BAD_REQUEST, describe(exc), salvage_id(frame)) from None
    if require_id and envelope.id is None:
        raise RequestError(BAD_REQUEST, "id: required (an integer or a string)")
    return envelope


def decode_params(envelope: Envelope, decoder: msgspec.json.Decoder[P],
                  default: bytes = b"{}") -> P:
    """The envelope's params decoded by ``decoder`` (``default`` when absent).

    Raises :class:`RequestError` BAD_REQUEST naming the offending field.
    """
    raw = default if envelope.params is msgspec.UNSET else envelope.params
    try:
        return decoder.decode(raw)
    except _ERRORS as exc:
        raise RequestError(BAD_REQUEST, describe(exc, "params"), envelope.id) from None


def salvage_id(frame: str) -> int | str | None:
    """The request id of a frame that failed to decode, if it can be read; else None."""
    try:
        value = msgspec.json.decode(frame)
    except Exception:  # malformed JSON, nesting too deep, ...: no id to echo
        return None
    if type(value) is not dict:
        return None
    rid = value.get("id")
    if type(rid) is int and -(2**63) <= rid < 2**63:
        return rid
    if type(rid) is str and len(rid) <= MAX_ID_LENGTH:
        return rid
    return None


_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(.*)`$", re.DOTALL)


def describe(exc: Exception, root: str = "") -> str:
    """A peer-safe message naming the field from a msgspec error, e.g. ``params.qty: ...``."""
    if isinstance(exc, RecursionError):
        return f"{root or 'request'}: nested too deeply"
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return f"{root or 'request'}: not valid JSON"
    text = str(exc)
    match = _AT.match(text)
    assert match is not None  # the pattern matches any string
    message, path = match.group(1), match.group(2) or ""
    where = (f"{root}{path}" if root else path.lstrip(".")) or root
    for pattern, what in ((_UNKNOWN_FIELD, "unknown field"), (_MISSING_FIELD, "required")):
        found = pattern.match(message)
        if found:
            name = found.group(1)[:40]
            return f"{where}.{name}: {what}" if where else f"{name}: {what}"
    if message.startswith("Expected `object`") and not where:
        return "request: must be a JSON object like {\"id\": 1, \"method\": \"ping\"}"
    message = message[:1].lower() + message[1:200]
    return f"{where or 'request'}: {message}"


def quote(text: str) -> str:
    """``text`` for an error message: cut to 40 characters, repr-quoted, and the quoted form
    cut to 64 (escapes of unprintable characters make it up to 10 times longer)."""
    quoted = repr(text[:40])
    return quoted if len(quoted) <= 64 else quoted[:60] + "..." + quoted[-1]


# -- replies ----------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """``{"code", "message"}`` plus the detail fields that have a value (None: omitted)."""

    code: str
    message: str
    retry_after_ms: int | None = None
    """RATE_LIMITED: milliseconds until the limit admits the next request."""
    reason: str | None = None
    """A failed logon: UNKNOWN_KEY, BAD_SIGNATURE or TIMESTAMP_OUT_OF_WINDOW."""
    server_time: int | None = None
    """A failed logon: the server's clock (ms since the epoch)."""


class ErrorReply(msgspec.Struct, frozen=True, gc=False):
    id: int | str | None
    error: ErrorBody


class ResultReply(msgspec.Struct, frozen=True, gc=False):
    id: int | str | None
    result: Any


encoder = msgspec.json.Encoder()
"""The JSON encoder of every frame the services send (built once)."""


def error_frame(request_id: int | str | None, code: str, message: str, *,
                retry_after_ms: int | None = None, reason: str | None = None,
                server_time: int | None = None) -> bytes:
    """``{"id", "error": {"code", "message", ...}}`` as JSON bytes (None details omitted)."""
    return encoder.encode(ErrorReply(request_id, ErrorBody(
        code, message, retry_after_ms, reason, server_time)))


def error_frame_of(exc: StreamexError, request_id: int | str | None) -> bytes:
    """The error reply of ``exc`` with its details; a RequestError echoes its own id."""
    if isinstance(exc, RequestError):
        request_id = exc.request_id
    return error_frame(request_id, exc.code, exc.message, retry_after_ms=exc.retry_after_ms,
                       reason=exc.reason, server_time=exc.server_time)


def result_frame(request_id: int | str | None, result: Any) -> bytes:
    """``{"id", "result"}`` as JSON bytes."""
    return encoder.encode(ResultReply(request_id, result))


def encode(message: Any) -> bytes:
    """UTF-8 JSON of one message (a Struct, dict, ...); sent as a text frame. O(size)."""
    return encoder.encode(message)

"""A request's parameters as Binance reads them: query string and form body, typed getters.

Binance takes parameters from the query string and, for POST/PUT/DELETE, from
an ``application/x-www-form-urlencoded`` body too; a parameter in both is
taken from the query string; one given twice in the same place is refused
(-1101). Each getter checks one parameter's syntax and raises Binance's
error for it (-1102 missing, -1105 empty, -1100 illegal characters, -1130
invalid); :meth:`Params.finish` then refuses any parameter the endpoint did
not read (-1104), so a misspelt parameter is never silently ignored.

:func:`signature_payload` gives what a signature covers: the raw query
string and the raw body, concatenated without separator, the ``signature``
parameter left out (Binance's ``totalParams``). No I/O; every getter is
O(length of its value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from api.errors import (
    ILLEGAL_CHARS,
    PARAM_EMPTY,
    TOO_MANY_PARAMETERS,
    UNREAD_PARAMETERS,
    BinanceError,
    illegal_chars,
    invalid_parameter,
    mandatory,
)

_LONG = re.compile(r"[0-9]{1,20}")
LONG_RANGE = "^[0-9]{1,20}$"
_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
MAX_PARAMS = 64
"""Most parameters one request may carry (-1101 beyond)."""


def _pairs(raw: str, into: dict[str, str], *, override: bool) -> None:
    seen: set[str] = set()
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            name = unquote_plus(name, errors="strict")
            value = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise BinanceError(ILLEGAL_CHARS, "Illegal characters found in a parameter.") from None
        if name in seen:
            raise BinanceError(TOO_MANY_PARAMETERS,
                               f"Duplicate values for a parameter detected. ('{name[:40]}')")
        seen.add(name)
        if override or name not in into:
            into[name] = value
        if len(into) > MAX_PARAMS:
            raise BinanceError(TOO_MANY_PARAMETERS,
                               "Too many parameters sent for this endpoint.")


def signature_payload(query: str, body: str) -> tuple[str, str | None]:
    """``(totalParams without the signature, signature or None)`` of raw query and body.

    Raises -1101 when ``signature`` is given more than once.
    """
    signature: str | None = None
    kept: list[str] = []
    for raw in (query, body):
        parts = []
        for part in raw.split("&"):
            if part.startswith("signature="):
                if signature is not None:
                    raise BinanceError(TOO_MANY_PARAMETERS,
                                       "Duplicate values for a parameter detected. "
                                       "('signature')")
                signature = part[len("signature="):]
            else:
                parts.append(part)
        kept.append("&".join(parts))
    return kept[0] + kept[1], signature


class Params:
    """One request's parameters; read each with a getter, then call :meth:`finish`."""

    __slots__ = ("_values", "_read")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self._read: set[str] = set()

    @classmethod
    def parse(cls, query: str, body: str = "") -> Params:
        """Decode raw (percent-encoded) query string and form body; the query wins."""
        values: dict[str, str] = {}
        _pairs(query, values, override=True)
        _pairs(body, values, override=False)
        return cls(values)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def names(self) -> Iterable[str]:
        return self._values.keys()

    def raw(self, name: str) -> str | None:
        """The value as sent (None when absent), marked as read; no check."""
        self._read.add(name)
        return self._values.get(name)

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A string parameter: -1102 when required and absent or empty, -1105 when empty."""
        value = self.raw(name)
        if value is None:
            if required:
                raise mandatory(name)
            return None
        if value == "":
            if required:
                raise mandatory(name)
            raise BinanceError(PARAM_EMPTY, f"Parameter '{name}' was empty.")
        return value

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def long(self, name: str, *, required: bool = False, low: int = 0,
             high: int = 2**63 - 1) -> int | None:
        """A LONG (``^[0-9]{1,20}$``) within ``[low, high]`` (-1130 outside)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        if not _LONG.fullmatch(value):
            raise illegal_chars(name, LONG_RANGE)
        number = int(value)
        if not low <= number <= high:
            raise invalid_parameter(name, f" (must be within [{low}, {high}])")
        return number

    def decimal(self, name: str, *, required: bool = False) -> str | None:
        """A DECIMAL's text (``^([0-9]{1,20})(\\.[0-9]{1,20})?$``), checked for syntax only."""
        value = self.text(name, required=required)
        if value is None:
            return None
        if not _DECIMAL.fullmatch(value):
            raise illegal_chars(name, DECIMAL_RANGE)
        return value

    def enum(self, name: str, allowed: Iterable[str], *, required: bool = False,
             error: BinanceError | None = None) -> str | None:
        """One of ``allowed``; ``error`` (default -1130) for any other value."""
        value = self.text(name, required=required)
        if value is None:
            return None
        if value not in allowed:
            raise error or invalid_parameter(name)
        return value

    def boolean(self, name: str) -> bool | None:
        """``true``/``false`` (either case), -1130 otherwise."""
        value = self.text(name)
        if value is None:
            return None
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise invalid_parameter(name)
        return lowered == "true"

    def finish(self) -> None:
        """Refuse what the endpoint did not read: -1104 naming the parameters."""
        unread = [n for n in self._values if n not in self._read]
        if unread:
            names = ", ".join(f"'{n[:40]}'" for n in unread[:5])
            raise BinanceError(UNREAD_PARAMETERS,
                               f"Not all sent parameters were read; read "
                               f"'{len(self._values) - len(unread)}' parameter(s) but was "
                               f"sent '{len(self._values)}'. (not read: {names})")

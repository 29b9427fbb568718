"""Market specifications and exact decimal <-> integer (tick, lot) conversion.

Prices and quantities are decimal strings on the wire and integers inside the
engine: a price is a number of ticks (``price / tick_size``), a quantity a
number of lots (``qty / lot_size``). No float is ever involved: strings are
parsed digit by digit into integers and compared by exact integer arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from contract.errors import (
    INVALID_LOT,
    INVALID_PRICE,
    INVALID_QTY,
    INVALID_TICK,
    StreamexError,
)

# A plain positive-or-zero decimal: digits, optionally one dot and more digits.
# No sign, no exponent, no spaces, no "NaN"/"inf", no leading or trailing dot.
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?")
_MAX_DECIMAL_LEN = 61
_SYMBOL = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")


def parse_decimal(text: object) -> tuple[int, int]:
    """Parse a plain decimal string into ``(digits, exp)`` meaning ``digits * 10**-exp``.

    Raises ``ValueError`` for anything that is not a plain non-negative decimal
    string (signs, exponents, NaN, infinity, whitespace, non-strings). O(len).
    """
    if type(text) is not str or len(text) > _MAX_DECIMAL_LEN or not _PLAIN_DECIMAL.fullmatch(text):
        raise ValueError(f"not a plain decimal string: {text!r:.40}")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return int(whole + frac), len(frac)


def _format_units(units: int, decimals: int) -> str:
    """Format ``units * 10**-decimals`` with exactly ``decimals`` fraction digits."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    s = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{s[:-decimals]}.{s[-decimals:]}"


@dataclass(frozen=True, slots=True)
class Scale:
    """A step size (tick or lot) as ``step_units * 10**-decimals``."""

    decimals: int
    step_units: int

    @classmethod
    def of(cls, text: str) -> Scale:
        digits, exp = parse_decimal(text)
        if digits == 0:
            raise ValueError("must be positive")
        return cls(exp, digits)

    def to_steps(self, digits: int, exp: int) -> int | None:
        """Exact number of steps in ``digits * 10**-exp``, or None when off-step."""
        if exp <= self.decimals:
            units = digits * 10 ** (self.decimals - exp)
            steps, rem = divmod(units, self.step_units)
            return None if rem else steps
        # More fraction digits than the step has (after stripping zeros): off-step.
        return None

    def format(self, steps: int) -> str:
        return _format_units(steps * self.step_units, self.decimals)


class Market(msgspec.Struct, frozen=True, dict=True, forbid_unknown_fields=True):
    """One listed market: the ``markets`` entry of the protocol and its arithmetic.

    The declared fields are decimal strings, exactly as in the configuration
    and on the wire (encoding a Market gives the ``markets`` entry); the
    integer bounds (``min_lots``, ``max_ticks``, ...) and step scales are
    derived once at construction, which raises ``ValueError`` naming the
    field for any bad value (and so does decoding one). Use
    :meth:`parse_price` / :meth:`parse_qty` at the edges to turn wire strings
    into ticks and lots, and :meth:`format_price` / :meth:`format_qty` to turn
    them back.
    """

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    min_price: str
    max_price: str

    # Derived at construction (kept in the instance __dict__, never encoded).
    tick: ClassVar[Scale]
    lot: ClassVar[Scale]
    min_lots: ClassVar[int]
    max_lots: ClassVar[int]
    min_ticks: ClassVar[int]
    max_ticks: ClassVar[int]

    def __post_init__(self) -> None:
        if not _SYMBOL.fullmatch(self.symbol):
            raise ValueError(f"symbol: {self.symbol!r} is not like 'BTC-USD'")
        derived = self.__dict__
        for name, attr in (("tick_size", "tick"), ("lot_size", "lot")):
            try:
                derived[attr] = Scale.of(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        bounds: dict[str, int] = {}
        for name, scale in (
            ("min_qty", self.lot),
            ("max_qty", self.lot),
            ("min_price", self.tick),
            ("max_price", self.tick),
        ):
            try:
                digits, exp = parse_decimal(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            steps = scale.to_steps(digits, exp)
            if steps is None or steps <= 0:
                step_name = "lot_size" if scale is self.lot else "tick_size"
                raise ValueError(f"{name}: must be a positive multiple of {step_name}")
            bounds[name] = steps
        if bounds["min_qty"] > bounds["max_qty"]:
            raise ValueError("min_qty: greater than max_qty")
        if bounds["min_price"] > bounds["max_price"]:
            raise ValueError("min_price: greater than max_price")
        derived["min_lots"] = bounds["min_qty"]
        derived["max_lots"] = bounds["max_qty"]
        derived["min_ticks"] = bounds["min_price"]
        derived["max_ticks"] = bounds["max_price"]

    # -- edges: wire strings -> integers -------------------------------------

    def parse_price(self, text: object, field_name: str = "price") -> int:
        """Wire price string -> ticks, or raise StreamexError INVALID_PRICE/INVALID_TICK."""
        return self._parse(text, self.tick, self.min_ticks, self.max_ticks,
                           INVALID_PRICE, INVALID_TICK, field_name, self.tick_size,
                           self.min_price, self.max_price)

    def parse_qty(self, text: object, field_name: str = "qty") -> int:
        """Wire quantity string -> lots, or raise StreamexError INVALID_QTY/INVALID_LOT."""
        return self._parse(text, self.lot, self.min_lots, self.max_lots,
                           INVALID_QTY, INVALID_LOT, field_name, self.lot_size,
                           self.min_qty, self.max_qty)

    @staticmethod
    def _parse(text: object, scale: Scale, lo: int, hi: int, range_code: str,
               step_code: str, field_name: str, step: str, lo_s: str, hi_s: str) -> int:
        try:
            digits, exp = parse_decimal(text)
        except ValueError:
            raise StreamexError(
                range_code, f"{field_name}: must be a positive decimal string like \"1.5\""
            ) from None
        if digits == 0:
            raise StreamexError(range_code, f"{field_name}: must be greater than zero")
        # Range first, compared exactly at the finer of the two scales.
        d = max(exp, scale.decimals)
        value = digits * 10 ** (d - exp)
        unit = scale.step_units * 10 ** (d - scale.decimals)
        if value < lo * unit or value > hi * unit:
            raise StreamexError(range_code, f"{field_name}: must be within [{lo_s}, {hi_s}]")
        steps = scale.to_steps(digits, exp)
        if steps is None:
            raise StreamexError(step_code, f"{field_name}: must be a multiple of {step}")
        return steps

    # -- edges: integers -> wire strings -------------------------------------

    def format_price(self, ticks: int) -> str:
        """Ticks -> price string with the tick's number of decimals."""
        return self.tick.format(ticks)

    def format_qty(self, lots: int) -> str:
        """Lots -> quantity string with the lot's number of decimals."""
        return self.lot.format(lots)

    def format_avg_price(self, notional: int, lots: int) -> str | None:
        """Average fill price from ``sum(ticks * lots)`` and ``sum(lots)``.

        Exact to the tick's decimals plus 8 more digits, rounded half-even;
        None when nothing was filled.
        """
        if lots == 0:
            return None
        extra = 8
        scaled_num = notional * self.tick.step_units * 10**extra
        q, r = divmod(scaled_num, lots)
        if 2 * r > lots or (2 * r == lots and q % 2):
            q += 1
        text = _format_units(q, self.tick.decimals + extra)
        if "." in text:
            text = text.rstrip("0")
            whole, _, frac = text.partition(".")
            if self.tick.decimals:
                text = f"{whole}.{frac.ljust(self.tick.decimals, '0')}"
            else:
                text = f"{whole}.{frac}" if frac else whole
        return text

    def to_wire(self) -> dict[str, str]:
        """The ``markets`` entry of PROTOCOL.md as a dict (the declared fields)."""
        return msgspec.structs.asdict(self)


DEFAULT_MARKETS = (
    Market("BTC-USD", "BTC", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000"),
    Market("ETH-USD", "ETH", "USD", "0.01", "0.001", "0.001", "10000", "0.01", "100000"),
)

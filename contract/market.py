"""Market specifications and exact decimal <-> integer (tick, lot, asset unit) arithmetic.

Prices and quantities are decimal strings on the wire and integers inside the
engine: a price is a number of ticks (``price / tick_size``), a quantity a
number of lots (``qty / lot_size``), an amount of an asset a number of its
smallest units (``amount * 10**decimals``). No float is ever involved:
strings are parsed digit by digit into integers and compared by exact
integer arithmetic.

Fees (PROTOCOL.md, section A) are decimal fractions of a fill's notional,
charged in the quote asset and rounded up to its unit. The rounding is per
order, cumulative: after each fill the order has paid ``ceil(exact fees so
far)``, so a fill pays ``ceil(F + n * rate) - ceil(F)`` (:meth:`Market.fee`).
A single fill pays ``ceil(n * rate)``; an order's fills together never pay
more than one unit above their exact fee, so a buy's hold
(:meth:`Market.buy_hold`, at the taker rate, which is never below the maker
rate) always covers everything its fills cost.
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


def parse_units(text: object, decimals: int) -> int:
    """A plain decimal amount string -> integer units of ``10**-decimals``; ``ValueError``
    for anything :func:`parse_decimal` refuses or finer than ``decimals``. O(len)."""
    digits, exp = parse_decimal(text)
    if exp > decimals:
        raise ValueError(f"{text!r:.40} has more than {decimals} decimals")
    return int(digits * 10 ** (decimals - exp))


def format_units(units: int, decimals: int) -> str:
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
        return format_units(steps * self.step_units, self.decimals)


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
    maker_fee: str = "0"
    """Fee of a fill that rested (the maker's), a fraction of its notional: "0.001" = 10 bps."""
    taker_fee: str = "0"
    """Fee of a fill that took; never below maker_fee (a buy's hold is at this rate)."""
    base_decimals: int | None = None
    """Decimals of the base asset's unit; None: the lot's (``[[assets]]`` sets it)."""
    quote_decimals: int | None = None
    """Decimals of the quote asset's unit; None: the tick's plus the lot's, the finest a
    notional needs (``[[assets]]`` sets it)."""

    # Derived at construction (kept in the instance __dict__, never encoded).
    tick: ClassVar[Scale]
    lot: ClassVar[Scale]
    min_lots: ClassVar[int]
    max_lots: ClassVar[int]
    min_ticks: ClassVar[int]
    max_ticks: ClassVar[int]
    fee_den: ClassVar[int]
    """Both fee rates are ``num / fee_den``."""
    maker_num: ClassVar[int]
    taker_num: ClassVar[int]
    base_units: ClassVar[int]
    """Decimals of the base asset's unit (resolved)."""
    quote_units: ClassVar[int]
    """Decimals of the quote asset's unit (resolved)."""
    base_per_lot: ClassVar[int]
    """Base units in one lot."""
    quote_per_tick_lot: ClassVar[int]
    """Quote units of one tick times one lot: ``notional = ticks * lots * this``."""

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
        self._derive_fees_and_units(derived)

    def _derive_fees_and_units(self, derived: dict[str, object]) -> None:
        rates: dict[str, tuple[int, int]] = {}
        for name in ("maker_fee", "taker_fee"):
            try:
                digits, exp = parse_decimal(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if digits >= 10**exp:
                raise ValueError(f"{name}: must be below 1 (a fraction: \"0.001\" is 10 bps)")
            rates[name] = (digits, exp)
        exp = max(e for _, e in rates.values())
        maker = rates["maker_fee"][0] * 10 ** (exp - rates["maker_fee"][1])
        taker = rates["taker_fee"][0] * 10 ** (exp - rates["taker_fee"][1])
        if maker > taker:
            raise ValueError("maker_fee: greater than taker_fee (a buy's hold is at the "
                             "taker rate and must cover a maker fill too)")
        derived["fee_den"] = 10**exp
        derived["maker_num"] = maker
        derived["taker_num"] = taker
        tick, lot = self.tick, self.lot
        need_base = lot.decimals
        need_quote = tick.decimals + lot.decimals
        for name, value, need in (("base_decimals", self.base_decimals, need_base),
                                  ("quote_decimals", self.quote_decimals, need_quote)):
            if value is not None and not need <= value <= 18:
                why = ("lot_size" if name == "base_decimals"
                       else "tick_size x lot_size, the finest notional")
                raise ValueError(f"{name}: must be in {need}..18 ({why} needs {need})")
        base_units = need_base if self.base_decimals is None else self.base_decimals
        quote_units = need_quote if self.quote_decimals is None else self.quote_decimals
        # Resolved into the fields too: a Market built from its wire form is equal to it.
        msgspec.structs.force_setattr(self, "base_decimals", base_units)
        msgspec.structs.force_setattr(self, "quote_decimals", quote_units)
        derived["base_units"] = base_units
        derived["quote_units"] = quote_units
        derived["base_per_lot"] = lot.step_units * 10 ** (base_units - lot.decimals)
        derived["quote_per_tick_lot"] = (tick.step_units * lot.step_units
                                         * 10 ** (quote_units - need_quote))

    # -- amounts: quote and base units ------------------------------------------

    def notional(self, ticks: int, lots: int) -> int:
        """Quote units of ``lots`` at ``ticks``: exact. O(1)."""
        return ticks * lots * self.quote_per_tick_lot

    def fee(self, fee_num: int, notional: int, maker: bool) -> tuple[int, int]:
        """One fill's fee: ``(quote units charged, the order's new fee_num)``.

        ``fee_num`` is the order's exact fees so far times ``fee_den`` (0 at
        first); the fill pays what brings the order's total to
        ``ceil(exact total)``. O(1).
        """
        after = fee_num + notional * (self.maker_num if maker else self.taker_num)
        den = self.fee_den
        return -(-after // den) - (-(-fee_num // den)), after

    def buy_hold(self, ticks: int, lots: int) -> int:
        """What a buy of ``lots`` at ``ticks`` holds: notional + its taker fee, rounded up."""
        notional = self.notional(ticks, lots)
        return notional + -(-notional * self.taker_num // self.fee_den)

    def base_amount(self, lots: int) -> int:
        """Base units in ``lots``."""
        return lots * self.base_per_lot

    def format_quote(self, units: int) -> str:
        """Quote units -> an amount string with the quote asset's decimals."""
        return format_units(units, self.quote_units)

    def format_base(self, units: int) -> str:
        """Base units -> an amount string with the base asset's decimals."""
        return format_units(units, self.base_units)

    def parse_quote(self, text: object, field_name: str = "quote_qty") -> int:
        """A positive quote amount string -> quote units, or StreamexError INVALID_QTY."""
        try:
            digits, exp = parse_decimal(text)
        except ValueError:
            raise StreamexError(INVALID_QTY, f"{field_name}: must be a positive decimal string "
                                             "like \"100.5\"") from None
        if digits == 0:
            raise StreamexError(INVALID_QTY, f"{field_name}: must be greater than zero")
        if exp > self.quote_units:
            raise StreamexError(INVALID_QTY, f"{field_name}: at most {self.quote_units} decimals "
                                             f"({self.quote})")
        units: int = digits * 10 ** (self.quote_units - exp)
        if units > 10**30:
            raise StreamexError(INVALID_QTY, f"{field_name}: too large")
        return units

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
        text = format_units(q, self.tick.decimals + extra)
        if "." in text:
            text = text.rstrip("0")
            whole, _, frac = text.partition(".")
            if self.tick.decimals:
                text = f"{whole}.{frac.ljust(self.tick.decimals, '0')}"
            else:
                text = f"{whole}.{frac}" if frac else whole
        return text

    def to_wire(self) -> dict[str, str | int]:
        """The ``markets`` entry of PROTOCOL.md as a dict."""
        wire: dict[str, str | int] = msgspec.structs.asdict(self)
        return wire


DEFAULT_MARKETS = (
    Market("BTC-USD", "BTC", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01", "1000000"),
    # USD has one unit on every market: the finest any of them needs (BTC-USD: 6 decimals).
    Market("ETH-USD", "ETH", "USD", "0.01", "0.001", "0.001", "10000", "0.01", "100000",
           quote_decimals=6),
)

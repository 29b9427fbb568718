"""What ``streamex demo`` quotes: a seeded ladder planner and the order diff (pure, no I/O).

:class:`QuotePlanner` turns ``(market, seed, starting mid)`` into an endless,
reproducible sequence of :class:`Step` s: the mid takes one step of a random
walk (``random.Random`` seeded from the seed and the symbol), the target
ladder around it is rebuilt (``levels`` bids and asks on a grid of
``spacing`` ticks, sizes in lots), and now and then a :class:`Take` says that
the taker account crosses the spread with an IOC at the best target level.
Everything is integers (ticks and lots, ``contract.market``) and stays within
the market's ``[min_price, max_price]`` and ``[min_qty, max_qty]``.

:func:`reconcile` compares a target ladder with the maker's resting orders
(as ``orders.open`` reports them) and returns the fewest requests that turn
one into the other: an order already on a target price stays (its size is
topped up when fills ate more than half of it), an order off the ladder is
moved onto a missing price with one amend (or cancel + place when the amend
would exceed ``max_qty``), surplus orders are cancelled and missing prices
get new post-only orders. The grid is sticky, so when the mid moves by less
than a grid step nothing is sent, and a move of one step costs one amend per
side.

The same seed, market, starting mid and resting orders always give the same
steps and the same requests: the demo's request sequence is reproducible
against a fresh exchange, and it can be tested without one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from contract.market import Market, parse_decimal

Side = Literal["buy", "sell"]

MAKER_ID_PREFIX = "dmk"
"""``client_order_id`` prefix of the maker's orders (``dmk17``); other orders are left alone."""
TAKER_ID_PREFIX = "dtk"
"""``client_order_id`` prefix of the taker's IOC orders."""

DEFAULT_MIDS = {"BTC-USD": "60000", "ETH-USD": "3000"}
"""Where to start quoting a market whose book is empty (other symbols: 100, clamped)."""
FALLBACK_MID = Fraction(100)
LEVEL_NOTIONAL = Fraction(2500)
"""Rough value of one level, in quote currency (the first level; deeper ones are larger)."""
SPACING_BPS = 1
"""Grid step, and distance from the mid to the best quote, in basis points of the start mid."""
WALK_SIGMA = 0.6
"""Standard deviation of one mid step, in grid steps."""
REVERSION = 200
"""The mid is pulled back by 1/REVERSION of its distance from the start on every step."""


@dataclass(frozen=True, slots=True)
class Quote:
    """A target level: one resting order of ``qty`` lots at ``price`` ticks."""

    side: Side
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class Take:
    """A crossing order of the taker: an IOC limit at ``price`` (the best opposite level)."""

    side: Side
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class Step:
    """One re-quote: the mid, the target ladder (best level first) and maybe a take."""

    mid: int
    bids: tuple[Quote, ...]
    asks: tuple[Quote, ...]
    take: Take | None

    @property
    def quotes(self) -> tuple[Quote, ...]:
        return self.bids + self.asks


@dataclass(frozen=True, slots=True)
class Resting:
    """One of the maker's open orders: total ``qty`` (filled part included), ``cum_qty`` filled."""

    client_order_id: str
    side: Side
    price: int
    qty: int
    cum_qty: int

    @property
    def leaves(self) -> int:
        return self.qty - self.cum_qty


@dataclass(frozen=True, slots=True)
class PlaceQuote:
    """``order.place``: a GTC post-only limit order of the maker."""

    client_order_id: str
    side: Side
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class AmendQuote:
    """``order.amend`` of a maker order: new total ``qty`` and, when it moves, ``price``."""

    client_order_id: str
    qty: int
    price: int | None


@dataclass(frozen=True, slots=True)
class CancelQuote:
    """``order.cancel`` of a maker order."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class TakeOrder:
    """``order.place`` of the taker: an IOC limit order."""

    client_order_id: str
    side: Side
    price: int
    qty: int


Action = PlaceQuote | AmendQuote | CancelQuote


# -- prices ---------------------------------------------------------------------------


def ticks_near(market: Market, price: Fraction) -> int:
    """The price on the market's tick nearest to ``price``, within [min_price, max_price]."""
    tick = Fraction(market.tick.step_units, 10**market.tick.decimals)
    return min(max(round(price / tick), market.min_ticks), market.max_ticks)


def mid_price(text: str) -> Fraction:
    """A user's price (``"60000"``, ``"2999.995"``) exactly; ``ValueError`` unless a
    plain positive decimal."""
    try:
        digits, exp = parse_decimal(text)
    except ValueError:
        raise ValueError(f"not a plain decimal price: {text!r}") from None
    if digits == 0:
        raise ValueError("must be positive")
    return Fraction(digits, 10**exp)


def parse_mid(market: Market, text: str) -> int:
    """A user's mid in ticks: rounded to the tick, within [min_price, max_price]."""
    return ticks_near(market, mid_price(text))


def default_mid(market: Market) -> int:
    """60000 for BTC-USD, 3000 for ETH-USD, else 100: in ticks, within the market's prices."""
    text = DEFAULT_MIDS.get(market.symbol)
    return ticks_near(market, Fraction(text) if text else FALLBACK_MID)


def book_mid(best_bid: int | None, best_ask: int | None) -> int | None:
    """Where to continue from a book's best bid and ask (ticks); None for an empty book."""
    if best_bid is not None and best_ask is not None:
        return (best_bid + best_ask) // 2
    return best_bid if best_bid is not None else best_ask


def _mix(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 rounds): the same everywhere, unlike ``hash``."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x


def _clamp(value: int, lo: int, hi: int) -> int:
    return lo if value < lo else hi if value > hi else value


# -- the planner ----------------------------------------------------------------------


class QuotePlanner:
    """The seeded random walk and target ladder of one market.

    ``mid`` (ticks) is where to start, by default :func:`default_mid`. The
    grid step ``spacing`` and the half spread are ~1 bp of the start (at
    least one tick); the mid stays where a full ladder fits within the
    market's prices whenever the market allows one (else levels outside are
    left out). Each :meth:`next_step` draws from the planner's own
    ``random.Random``, so the sequence depends on ``(seed, symbol, mid,
    levels, take_probability)`` only.
    """

    def __init__(self, market: Market, seed: int, mid: int | None = None, *, levels: int = 5,
                 take_probability: float = 0.6) -> None:
        if levels < 1:
            raise ValueError("levels: must be at least 1")
        if not 0.0 <= take_probability <= 1.0:
            raise ValueError("take_probability: must be within [0, 1]")
        self.market = market
        self.levels = levels
        self.take_probability = take_probability
        self._rng = random.Random(f"streamex-demo:{seed}:{market.symbol}")
        self._salt = self._rng.getrandbits(64)
        start = _clamp(default_mid(market) if mid is None else mid,
                       market.min_ticks, market.max_ticks)
        self.spacing = max(1, start * SPACING_BPS // 10_000)
        self.half_spread = self.spacing
        lo = market.min_ticks + self.half_spread + self.spacing
        hi = market.max_ticks - self.half_spread - self.spacing
        if lo > hi:  # too narrow a market for a ladder on both sides: quote what fits
            lo = hi = (market.min_ticks + market.max_ticks) // 2
        self._lo, self._hi = lo, hi
        self.mid = self.anchor = _clamp(start, lo, hi)
        self.base_lots = _base_lots(market, self.mid)
        self.steps = 0

    def next_step(self) -> Step:
        """Walk the mid one step; the ladder around it and, with ``take_probability``, a take."""
        rng = self._rng
        drift = round(rng.gauss(0.0, WALK_SIGMA * self.spacing))
        gap = self.anchor - self.mid
        revert = gap // REVERSION if gap >= 0 else -(-gap // REVERSION)
        self.mid = _clamp(self.mid + drift + revert, self._lo, self._hi)
        bids, asks = self.ladder(self.mid)
        take = None
        if rng.random() < self.take_probability:
            side: Side = "buy" if rng.random() < 0.5 else "sell"
            opposite = asks if side == "buy" else bids
            fraction = rng.randint(20, 80)
            if opposite:
                best = opposite[0]
                qty = _clamp(best.qty * fraction // 100, self.market.min_lots,
                             self.market.max_lots)
                take = Take(side, best.price, qty)
        self.steps += 1
        return Step(self.mid, bids, asks, take)

    def ladder(self, mid: int) -> tuple[tuple[Quote, ...], tuple[Quote, ...]]:
        """Bids and asks (best first) around ``mid``, on the grid, within the market's prices.

        Every bid is below every ask: the best bid is at most ``mid - half_spread``,
        the best ask at least ``mid + half_spread``, and the half spread is >= 1 tick.
        """
        m, g, h = self.market, self.spacing, self.half_spread
        top_bid = (mid - h) // g * g
        top_ask = -(-(mid + h) // g) * g
        bids = tuple(Quote("buy", p, self.size("buy", p, i))
                     for i, p in enumerate(top_bid - i * g for i in range(self.levels))
                     if m.min_ticks <= p <= m.max_ticks)
        asks = tuple(Quote("sell", p, self.size("sell", p, i))
                     for i, p in enumerate(top_ask + i * g for i in range(self.levels))
                     if m.min_ticks <= p <= m.max_ticks)
        return bids, asks

    def size(self, side: Side, price: int, level: int) -> int:
        """Lots at ``price``, the ``level``-th from the best: larger deeper, varied per price."""
        jitter = 60 + _mix(self._salt, side == "buy", price) % 81  # 60..140 percent
        lots = self.base_lots * (2 + level) * jitter // 200
        return _clamp(lots, self.market.min_lots, self.market.max_lots)

    def describe(self) -> str:
        """``BTC-USD around 60000.00 (5+5 levels 6.00 apart, 0.0416 per level)``."""
        m = self.market
        return (f"{m.symbol} around {m.format_price(self.mid)} ({self.levels}+{self.levels} "
                f"levels {m.format_price(self.spacing)} apart, "
                f"{m.format_qty(self.base_lots)} {m.base} per level)")


def _base_lots(market: Market, mid: int) -> int:
    """Lots worth about ``LEVEL_NOTIONAL`` at ``mid`` ticks, within [min_qty, max_qty]."""
    price = Fraction(mid * market.tick.step_units, 10**market.tick.decimals)
    lot = Fraction(market.lot.step_units, 10**market.lot.decimals)
    return _clamp(int(LEVEL_NOTIONAL / (price * lot)), market.min_lots, market.max_lots)


# -- the diff -------------------------------------------------------------------------


def maker_id(n: int) -> str:
    return f"{MAKER_ID_PREFIX}{n}"


def taker_id(n: int) -> str:
    return f"{TAKER_ID_PREFIX}{n}"


def id_number(client_order_id: str | None, prefix: str = MAKER_ID_PREFIX) -> int | None:
    """``17`` for ``"dmk17"``; None for an order the demo did not place."""
    if client_order_id is None or not client_order_id.startswith(prefix):
        return None
    digits = client_order_id[len(prefix):]
    return int(digits) if digits.isdigit() and digits.isascii() else None


def reconcile(market: Market, target: Iterable[Quote], resting: Iterable[Resting],
              new_id: Callable[[], str]) -> list[Action]:
    """The requests that turn the maker's ``resting`` orders into the ``target`` ladder.

    Orders whose client id does not start with :data:`MAKER_ID_PREFIX` are
    ignored. Cancels come first, then the side whose quotes move away from
    the other side, so the maker's own quotes never cross on the way (they
    are post-only: one that would take is refused, never traded). ``new_id()``
    names each new order. The result depends only on the arguments, not on
    the order of ``resting`` (it is sorted first).
    """
    quotes = list(target)
    ours = sorted((r for r in resting if id_number(r.client_order_id) is not None),
                  key=lambda r: (r.side, r.price, id_number(r.client_order_id)))
    cancels: list[Action] = []
    moves: dict[str, list[Action]] = {}
    for side in ("buy", "sell"):
        want = sorted((q for q in quotes if q.side == side), key=lambda q: q.price,
                      reverse=side == "buy")
        wanted = {q.price: q for q in want}
        kept: dict[int, Resting] = {}
        spare: list[Resting] = []
        for r in (r for r in ours if r.side == side):
            if r.price in wanted and r.price not in kept:
                kept[r.price] = r
            else:
                spare.append(r)
        spare.sort(key=lambda r: r.price, reverse=side == "buy")  # best first
        actions: list[Action] = []
        for q in want:
            there = kept.get(q.price)
            if there is None:
                if spare:
                    actions += _move(market, spare.pop(0), q, new_id)
                else:
                    actions.append(PlaceQuote(new_id(), side, q.price, q.qty))
            elif 2 * there.leaves < q.qty:  # fills ate more than half of it: top it up
                actions += _move(market, there, q, new_id, same_price=True)
        cancels += [CancelQuote(r.client_order_id) for r in spare]
        moves[side] = actions
    # When the bids move up, the asks move first (and the other way round).
    best_bid_now = max((r.price for r in ours if r.side == "buy"), default=None)
    best_bid_then = max((q.price for q in quotes if q.side == "buy"), default=None)
    rising = (best_bid_now is not None and best_bid_then is not None
              and best_bid_then > best_bid_now)
    first, second = ("sell", "buy") if rising else ("buy", "sell")
    return cancels + moves[first] + moves[second]


def _move(market: Market, r: Resting, q: Quote, new_id: Callable[[], str],
          same_price: bool = False) -> list[Action]:
    """Put ``r`` at ``q`` (leaves ``q.qty``): one amend, or cancel + place past ``max_qty``."""
    total = r.cum_qty + q.qty
    if total <= market.max_lots:
        return [AmendQuote(r.client_order_id, total, None if same_price else q.price)]
    return [CancelQuote(r.client_order_id), PlaceQuote(new_id(), q.side, q.price, q.qty)]


# -- on the wire ----------------------------------------------------------------------


def wire_request(market: Market, action: Action | TakeOrder) -> tuple[str, dict[str, Any]]:
    """``(method, params)`` of the protocol request for ``action`` (PROTOCOL.md)."""
    symbol = market.symbol
    if isinstance(action, PlaceQuote):
        return "order.place", {"symbol": symbol, "side": action.side, "type": "limit",
                               "qty": market.format_qty(action.qty),
                               "price": market.format_price(action.price), "post_only": True,
                               "client_order_id": action.client_order_id}
    if isinstance(action, TakeOrder):
        return "order.place", {"symbol": symbol, "side": action.side, "type": "limit",
                               "qty": market.format_qty(action.qty),
                               "price": market.format_price(action.price), "tif": "IOC",
                               "client_order_id": action.client_order_id}
    if isinstance(action, AmendQuote):
        params: dict[str, Any] = {"symbol": symbol, "client_order_id": action.client_order_id,
                                  "qty": market.format_qty(action.qty)}
        if action.price is not None:
            params["price"] = market.format_price(action.price)
        return "order.amend", params
    return "order.cancel", {"symbol": symbol, "client_order_id": action.client_order_id}


def resting_of(market: Market, client_order_id: str | None, side: str | None,
               price: str | None, qty: str | None, cum_qty: str | None) -> Resting | None:
    """A maker order from an ``orders.open`` report's fields; None if it is not the maker's."""
    if id_number(client_order_id) is None or side not in ("buy", "sell") or price is None \
            or qty is None or cum_qty is None:
        return None
    assert client_order_id is not None
    return Resting(client_order_id, "buy" if side == "buy" else "sell",
                   market.parse_price(price), _lots(market, qty), _lots(market, cum_qty))


def _lots(market: Market, text: str) -> int:
    """A reported quantity (zero allowed, unlike an order's) in lots."""
    digits, exp = parse_decimal(text)
    lots = market.lot.to_steps(digits, exp)
    if lots is None:
        raise ValueError(f"not a multiple of {market.lot_size}: {text!r}")
    return lots


def plan(market: Market, seed: int, steps: int, mid: int | None = None, levels: int = 5
         ) -> Sequence[Step]:
    """The first ``steps`` steps of a planner (for tests and for looking at a seed)."""
    planner = QuotePlanner(market, seed, mid, levels=levels)
    return [planner.next_step() for _ in range(steps)]

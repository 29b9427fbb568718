"""A market's level-2 book (price -> total quantity) and its top-D window diffs.

Sans-I/O: feed the absolute level totals of ``BookUpdate`` events with
:meth:`L2Book.apply` and get back, for each watched depth D, the changes a
subscriber that holds exactly the top D levels of each side must apply to stay
exact (Kraken v2 semantics):

- a level inside the window whose total changed: its new absolute total;
- a level that left the window (deleted, or pushed below D by a better level):
  total ``0``;
- a level that entered the window from below because a better one went away:
  its absolute total, although the engine did not touch it.

Prices are integer ticks and totals integer lots. Each side keeps its prices as
*keys* ascending from the best level (asks: ``price``, bids: ``-price``) in a
``SortedList``, so both sides share one code path. Cost of :meth:`apply`:
O(t log n + sum over depths of (t + k)) for t touched levels and k levels
entering or leaving a window; it never walks a whole window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sortedcontainers import SortedList

from contract.market_data import DEPTHS

Level = tuple[int, int]
"""``(price in ticks, total in lots)``; a total of 0 deletes the level."""


@dataclass(frozen=True, slots=True)
class WindowChange:
    """What changed in the top-D window of both sides: levels best first."""

    bids: list[Level]
    asks: list[Level]


class _Side:
    """One side: totals by key, keys ascending best first (key = ``sign * price``)."""

    __slots__ = ("sign", "keys", "totals")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: SortedList = SortedList()
        self.totals: dict[int, int] = {}

    def boundary(self, depth: int) -> int | None:
        """Key of the D-th best level, or None when the side has fewer than D levels."""
        keys = self.keys
        return keys[depth - 1] if len(keys) >= depth else None

    def top(self, n: int) -> list[Level]:
        """Best ``n`` levels as ``(price, total)``. O(log L + n)."""
        sign, totals = self.sign, self.totals
        return [(sign * k, totals[k]) for k in self.keys.islice(0, n)]

    def apply(self, changes: dict[int, int], depths: Sequence[int]) -> dict[int, list[Level]]:
        """Set absolute totals by price; return the per-depth window changes (best first)."""
        sign = self.sign
        keys = self.keys
        totals = self.totals
        # State before: each touched key's old total, and each window's last key.
        touched: dict[int, int] = {}
        for price in changes:
            k = sign * price
            touched[k] = totals.get(k, 0)
        old_bounds = [self.boundary(d) for d in depths]
        for price, total in changes.items():
            k = sign * price
            if total > 0:
                if k not in totals:
                    keys.add(k)
                totals[k] = total
            elif k in totals:
                del totals[k]
                keys.remove(k)
        n = len(keys)
        first_touched = min(touched) if touched else None
        out: dict[int, list[Level]] = {}
        for depth, old_b in zip(depths, old_bounds, strict=True):
            new_b = self.boundary(depth)
            # Levels move in or out of a window only when a touched key lies inside
            # the old or the new one; beyond both, nothing changed for this depth.
            if (first_touched is None or old_b is not None and new_b is not None
                    and first_touched > old_b and first_touched > new_b):
                continue
            diff: dict[int, int] = {}
            for k, old_total in touched.items():
                was_in = old_total > 0 and (old_b is None or k <= old_b)
                new_total = totals.get(k, 0)
                is_in = new_total > 0 and (new_b is None or k <= new_b)
                if is_in:
                    if not was_in or old_total != new_total:
                        diff[k] = new_total
                elif was_in:
                    diff[k] = 0
            if old_b is not None:
                # Untouched levels that entered from below: keys in (old_b, new_b].
                start = keys.bisect_right(old_b)
                for k in keys.islice(start, min(depth, n)):
                    if k not in touched:
                        diff[k] = totals[k]
            if new_b is not None:
                # Untouched levels pushed out: keys in (new_b, old_b], at index >= depth.
                stop = n if old_b is None else keys.bisect_right(old_b)
                for k in keys.islice(depth, max(depth, stop)):
                    if k not in touched:
                        diff[k] = 0
            if diff:
                out[depth] = [(sign * k, diff[k]) for k in sorted(diff)]
        return out

    def load(self, levels: Iterable[Level]) -> None:
        """Replace the side's content with ``levels`` (any order, totals > 0)."""
        self.totals = {self.sign * p: q for p, q in levels if q > 0}
        self.keys = SortedList(self.totals)


class L2Book:
    """Aggregated levels of both sides; see the module docstring.

    Call :meth:`apply` once per batch of book updates (it merges them; totals
    are absolute, so the last total of a price wins), then publish the returned
    changes; :meth:`top` serves snapshots and checksums.
    """

    __slots__ = ("_bids", "_asks")

    def __init__(self) -> None:
        self._bids = _Side(-1)
        self._asks = _Side(1)

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (e.g. from an engine snapshot). O(L log L)."""
        self._bids.load(bids)
        self._asks.load(asks)

    def apply(self, bid_changes: dict[int, int], ask_changes: dict[int, int],
              depths: Sequence[int] = DEPTHS) -> dict[int, WindowChange]:
        """Apply absolute totals (price -> lots, 0 deletes) to both sides.

        Returns, for each depth in ``depths`` whose window changed on either
        side, the levels to send (best first, ``0`` = delete). Depths absent
        from the result saw no change.
        """
        bids = self._bids.apply(bid_changes, depths) if bid_changes else {}
        asks = self._asks.apply(ask_changes, depths) if ask_changes else {}
        return {d: WindowChange(bids.get(d, []), asks.get(d, []))
                for d in depths if d in bids or d in asks}

    def top(self, side: str, n: int) -> list[Level]:
        """Best ``n`` levels of ``side`` (``"buy"`` or ``"sell"``), best first. O(log L + n)."""
        return (self._bids if side == "buy" else self._asks).top(n)

    def best(self, side: str) -> Level | None:
        """Best level of ``side`` or None when the side is empty. O(1)."""
        s = self._bids if side == "buy" else self._asks
        if not s.keys:
            return None
        k = s.keys[0]
        return (s.sign * k, s.totals[k])

    def levels(self, side: str) -> int:
        """Number of price levels on ``side``."""
        return len((self._bids if side == "buy" else self._asks).keys)


def window_diff(old: Sequence[Level], new: Sequence[Level]) -> list[Level]:
    """Changes turning window ``old`` into window ``new`` (same side, best first).

    Used after a full reload (no per-level history): O(len(old) + len(new)).
    The result keeps the order of ``new`` followed by the deleted levels;
    callers sort it.
    """
    old_totals = dict(old)
    new_prices = {p for p, _ in new}
    diff = [(p, q) for p, q in new if old_totals.get(p) != q]
    diff.extend((p, 0) for p, _ in old if p not in new_prices)
    return diff

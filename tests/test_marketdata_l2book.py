"""The L2 book's top-D window diffs: a depth-D holder stays exact (Kraken v2 semantics)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.l2book import L2Book, Level, window_diff

SMALL_DEPTHS = (1, 2, 3, 5, 8)


class Holder:
    """A subscriber holding the top ``depth`` levels of each side, applying updates."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.sides: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}

    def apply(self, side: str, levels: list[Level]) -> None:
        held = self.sides[side]
        for price, total in levels:
            if total == 0:
                assert price in held, f"depth {self.depth}: delete of unheld {price}"
                del held[price]
            else:
                assert held.get(price) != total, f"depth {self.depth}: no-op level {price}"
                held[price] = total
        assert len(held) <= self.depth

    def top(self, side: str) -> list[Level]:
        held = self.sides[side]
        return sorted(held.items(), reverse=side == "buy")


def truth(levels: dict[int, int], side: str, depth: int) -> list[Level]:
    return sorted(levels.items(), reverse=side == "buy")[:depth]


def run_batches(batches: list[tuple[dict[int, int], dict[int, int]]]) -> None:
    book = L2Book()
    holders = {d: Holder(d) for d in SMALL_DEPTHS}
    real: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
    for bids, asks in batches:
        changes = book.apply(bids, asks, SMALL_DEPTHS)
        for side, batch in (("buy", bids), ("sell", asks)):
            for price, total in batch.items():
                if total:
                    real[side][price] = total
                else:
                    real[side].pop(price, None)
        for d, holder in holders.items():
            change = changes.get(d)
            if change is not None:
                assert change.bids or change.asks
                for side, levels in (("buy", change.bids), ("sell", change.asks)):
                    keys = [-p if side == "buy" else p for p, _ in levels]
                    assert keys == sorted(keys), "levels not best first"
                    holder.apply(side, levels)
            for side in ("buy", "sell"):
                assert holder.top(side) == truth(real[side], side, d), (d, side)
                assert book.top(side, d) == truth(real[side], side, d)


def random_batch(rng: random.Random, width: int) -> tuple[dict[int, int], dict[int, int]]:
    def side() -> dict[int, int]:
        return {rng.randrange(width): rng.choice((0, 0, 1, 2, 3, 7))
                for _ in range(rng.randint(0, 4))}

    return side(), side()


def test_seeded_random_batches_keep_every_depth_exact() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        run_batches([random_batch(rng, 25) for _ in range(300)])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.dictionaries(st.integers(0, 15), st.integers(0, 4), max_size=4),
    st.dictionaries(st.integers(0, 15), st.integers(0, 4), max_size=4)), max_size=40))
def test_any_batches_keep_every_depth_exact(batches: list[tuple[dict[int, int],
                                                                dict[int, int]]]) -> None:
    run_batches(batches)


def test_removed_level_brings_in_the_next_one_from_below() -> None:
    book = L2Book()
    book.apply({100: 1, 99: 2, 98: 3, 97: 4}, {}, (3,))
    change = book.apply({99: 0}, {}, (3,))[3]
    assert change.bids == [(99, 0), (97, 4)]
    assert change.asks == []


def test_inserted_level_pushes_the_last_one_out() -> None:
    book = L2Book()
    book.apply({}, {100: 1, 101: 2, 102: 3, 103: 4}, (3,))
    change = book.apply({}, {99: 5}, (3,))[3]
    assert change.asks == [(99, 5), (102, 0)]


def test_change_below_the_window_is_not_sent() -> None:
    book = L2Book()
    book.apply({100: 1, 99: 2, 98: 3, 97: 4}, {}, (3, 5))
    changes = book.apply({97: 9}, {}, (3, 5))
    assert 3 not in changes
    assert changes[5].bids == [(97, 9)]


def test_deleting_an_absent_level_changes_nothing() -> None:
    book = L2Book()
    book.apply({}, {100: 1}, (10,))
    assert book.apply({50: 0}, {101: 0}, (10,)) == {}
    change = book.apply({50: 0}, {100: 3}, (10,))[10]
    assert change.bids == [] and change.asks == [(100, 3)]


def test_window_diff_turns_old_into_new() -> None:
    old = [(100, 1), (99, 2), (98, 3)]
    new = [(100, 1), (99, 5), (97, 4)]
    assert sorted(window_diff(old, new)) == [(97, 4), (98, 0), (99, 5)]
    assert window_diff(new, new) == []

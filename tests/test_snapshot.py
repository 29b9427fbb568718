"""Snapshot and restore: a restored book continues byte-identically.

Taking a snapshot at any point, encoding, decoding and restoring it, then
applying the rest of the commands must give the same encoded events and the
same book (depth, open orders with every field, counters) as one book that
applied everything: with fees (each order's ``fee_num``), market buys by
budget and commands forwarded by the risk stage (``risk_seqs``), and a
version-1 snapshot still decodes.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_matcher import ACCOUNTS, WORKLOAD_MARKET, WORKLOAD_MARKETS, Workload

from contract.commands import Amend, Cancel, CancelAll, Command, Place, encode_command
from contract.events import Event, encode_events
from contract.market import DEFAULT_MARKETS, Market
from contract.snapshot import (
    SNAPSHOT_VERSION,
    RestingOrder,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
)
from contract.streams import forward_entry
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import restore_book, take_snapshot

MARKET = WORKLOAD_MARKET


def state(book: OrderBook) -> dict[str, Any]:
    """Everything observable about a book, to compare two books."""
    book._check()
    return {
        "bids": book.depth("buy"),
        "asks": book.depth("sell"),
        "best": (book.best_bid(), book.best_ask()),
        "open": {a: [(o.order_id, o.client_order_id, o.side, o.type, o.tif, o.price, o.qty,
                      o.cum_qty, o.leaves, o.cum_notional, o.post_only, o.stp, o.prio,
                      o.fee_num)
                     for o in book.open_orders(a)] for a in ACCOUNTS},
        "counters": (book.seq, book.trade_id, book.prio),
        "risk_seqs": dict(book.risk_seqs),
        "queue": take_snapshot(book).orders,
    }


def open_ids(book: OrderBook) -> list[tuple[str, str, str | None]]:
    return [(o.order_id, o.account, o.client_order_id)
            for a in ACCOUNTS for o in book.open_orders(a)]


def round_trip(book: OrderBook, last_input_id: str, last_out_id: str = "0-0") -> OrderBook:
    snap = decode_snapshot(encode_snapshot(take_snapshot(book, last_input_id, last_out_id)))
    assert snap.last_input_id == last_input_id and snap.last_out_id == last_out_id
    restored = restore_book(book.market, snap)
    restored._check()
    assert take_snapshot(restored, last_input_id, last_out_id) == snap
    return restored


def test_empty_book_snapshot() -> None:
    book = OrderBook(MARKET)
    snap = take_snapshot(book)
    assert snap == Snapshot(SNAPSHOT_VERSION, "TST-USD", "0-0", "0-0", 0, 0, 0, [], [])
    assert SNAPSHOT_VERSION == 3
    restored = restore_book(MARKET, decode_snapshot(encode_snapshot(snap)))
    assert state(restored) == state(book)


def _busy_book() -> tuple[OrderBook, list[tuple[str, Command]]]:
    """A book with several levels, partial fills, post-only, STP modes and client ids."""
    cmds: list[tuple[str, Command]] = [
        ("10-0", Place("A", "buy", "limit", 5, 100, client_order_id="a1")),
        ("10-1", Place("B", "buy", "limit", 3, 100, stp="cancel_maker")),
        ("11-0", Place("C", "buy", "limit", 4, 99, post_only=True, stp="none")),
        ("12-0", Place("D", "sell", "limit", 6, 102, client_order_id="d1")),
        ("12-1", Place("A", "sell", "limit", 2, 103, stp="cancel_both")),
        ("13-0", Place("D", "sell", "limit", 2, 100)),  # partially fills A's bid
        ("14-0", Place("B", "buy", "limit", 1, 102)),  # partially fills D's ask
        ("15-0", Amend("C", "11-0", qty=3)),
    ]
    book = OrderBook(MARKET)
    for input_id, cmd in cmds:
        book.apply(input_id, cmd)
    return book, cmds


def test_snapshot_holds_resting_orders_in_priority_and_the_counters() -> None:
    book, _ = _busy_book()
    snap = take_snapshot(book, "15-0", "7-3")
    assert (snap.version, snap.symbol, snap.last_input_id, snap.last_out_id) == (
        SNAPSHOT_VERSION, "TST-USD", "15-0", "7-3")
    assert (snap.seq, snap.trade_id, snap.prio) == (book.seq, 2, book.prio)
    assert snap.orders == [
        RestingOrder("10-0", "A", "a1", "buy", 100, 5, 2, 200, False, "cancel_taker", 1),
        RestingOrder("10-1", "B", None, "buy", 100, 3, 0, 0, False, "cancel_maker", 2),
        RestingOrder("11-0", "C", None, "buy", 99, 3, 0, 0, True, "none", 3),
        RestingOrder("12-0", "D", "d1", "sell", 102, 6, 1, 102, False, "cancel_taker", 4),
        RestingOrder("12-1", "A", None, "sell", 103, 2, 0, 0, False, "cancel_both", 5),
    ]


def test_restored_book_equals_the_original_and_continues_identically() -> None:
    book, _ = _busy_book()
    restored = round_trip(book, "15-0")
    assert state(restored) == state(book)
    follow_up: list[tuple[str, Command]] = [
        ("16-0", Place("A", "buy", "limit", 1, 90, client_order_id="a1")),  # duplicate id
        ("16-1", Place("B", "sell", "limit", 9, 99)),  # sweeps bids, STP with B's own bid
        ("17-0", Amend("C", "11-0", price=102)),  # post-only: would take
        ("17-1", Cancel("D", client_order_id="d1")),
        ("18-0", Place("A", "buy", "market", 3, stp="cancel_both")),
        ("18-1", CancelAll("A")),
        ("19-0", Place("C", "sell", "limit", 1, 98, tif="FOK")),
    ]
    for input_id, cmd in follow_up:
        assert encode_events(restored.apply(input_id, cmd)) == \
            encode_events(book.apply(input_id, cmd))
        assert state(restored) == state(book)
    assert book.trade_id > 2  # the follow-up really traded


def test_decode_rejects_other_versions_and_garbage() -> None:
    book, _ = _busy_book()
    snap = take_snapshot(book)
    future = msgspec.structs.replace(snap, version=SNAPSHOT_VERSION + 1)
    with pytest.raises(ValueError, match="version"):
        decode_snapshot(encode_snapshot(future))
    with pytest.raises(msgspec.DecodeError):
        decode_snapshot(b"\x93garbage")
    with pytest.raises(msgspec.ValidationError):
        decode_snapshot(msgspec.msgpack.encode([1, "TST-USD"]))


def test_restore_refuses_a_snapshot_of_another_market() -> None:
    book, _ = _busy_book()
    with pytest.raises(ValueError, match="TST-USD"):
        restore_book(DEFAULT_MARKETS[0], take_snapshot(book))


def test_encoded_snapshot_is_unaffected_by_later_commands() -> None:
    book, _ = _busy_book()
    data = encode_snapshot(take_snapshot(book, "15-0"))
    before = state(book)
    book.apply("20-0", Place("Z", "sell", "market", 20))
    book.apply("20-1", CancelAll("C"))
    assert state(restore_book(MARKET, decode_snapshot(data))) == before


Step = tuple[str, Command, list[bytes] | None]
"""``(input entry id, command, the forwarded entry's fields or None)``."""


def _step(book: OrderBook, step: Step) -> bytes:
    input_id, cmd, fields = step
    if fields is None:
        return encode_events(book.apply(input_id, cmd))
    events: list[Event] = []
    apply_entries(book, [[input_id.encode(), fields]], events)
    return encode_events(events)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(30, 300), data=st.data(),
       market=st.sampled_from(WORKLOAD_MARKETS))
def test_snapshot_at_any_point_continues_byte_identically(
        seed: int, n: int, data: st.DataObject, market: Market) -> None:
    """Cut a random workload at 1-3 points; each cut goes through encode/decode/restore.

    Fees, budget buys, and a fifth of the commands forwarded by two risk
    shards, some of them forwarded twice (the copy must be dropped after a
    restore too).
    """
    rng = random.Random(seed)
    workload = Workload(random.Random(seed), market)
    whole = OrderBook(market)
    commands: list[Step] = []
    expected: list[bytes] = []
    risk_seq = {1: 0, 2: 0}
    sent: list[list[bytes]] = []
    for k in range(n):
        input_id, cmd = workload.next(open_ids(whole))
        fields = None
        if sent and rng.random() < 0.05:
            fields = rng.choice(sent)  # a re-forward
        elif rng.random() < 0.2:
            shard = rng.choice((1, 2))
            risk_seq[shard] += 1
            fields = forward_entry(encode_command(cmd), shard, risk_seq[shard], f"{k}-9-{shard}")
            sent.append(fields)
        commands.append((input_id, cmd, fields))
        expected.append(_step(whole, commands[-1]))
        whole._check()
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=3)))
    book = OrderBook(market)
    got: list[bytes] = []
    for i, step in enumerate(commands):
        while cuts and cuts[0] == i:
            cuts.pop(0)
            book = round_trip(book, commands[i - 1][0] if i else "0-0", f"{i}-0")
        got.append(_step(book, step))
        book._check()
    if cuts:  # a cut after the last command
        book = round_trip(book, commands[-1][0] if commands else "0-0")
    assert got == expected
    assert state(book) == state(whole)


def test_snapshot_carries_fee_num_and_risk_seqs() -> None:
    market = WORKLOAD_MARKETS[2]
    book = OrderBook(market)
    book.apply("1-0", Place("A", "sell", "limit", 5, 101))
    events: list[Event] = []
    fields = forward_entry(encode_command(Place("B", "buy", "limit", 2, 101)), 4, 7, "9-0-4")
    apply_entries(book, [[b"2-0", fields]], events)
    snap = take_snapshot(book)
    [resting] = snap.orders
    assert resting.cum_qty == 2 and resting.fee_num == book.orders["1-0"].fee_num > 0
    assert snap.risk_seqs == [(4, 7)]
    restored = restore_book(market, decode_snapshot(encode_snapshot(snap)))
    assert state(restored) == state(book)
    replayed: list[Event] = []
    apply_entries(restored, [[b"3-0", fields]], replayed)
    assert replayed == []  # applied before the snapshot: dropped after the restore too


def test_a_version_1_snapshot_still_decodes() -> None:
    """Written before fees and the risk stage: 11-field orders, no risk_seqs."""
    v1 = msgspec.msgpack.encode([
        1, "TST-USD", "15-0", "7-3", 12, 2, 5,
        [["10-0", "A", "a1", "buy", 100, 5, 2, 200, False, "cancel_taker", 1],
         ["12-0", "D", None, "sell", 102, 6, 1, 102, False, "cancel_maker", 4]],
    ])
    snap = decode_snapshot(v1)
    assert snap.version == 1 and snap.risk_seqs == []
    assert [o.fee_num for o in snap.orders] == [0, 0]
    book = restore_book(MARKET, snap)
    book._check()
    assert book.risk_seqs == {} and (book.seq, book.trade_id, book.prio) == (12, 2, 5)
    assert book.depth("buy") == [(100, 3)] and book.depth("sell") == [(102, 5)]
    # Written again, it is a version-3 snapshot of the same book (GTC limit orders).
    again = take_snapshot(book, "15-0", "7-3")
    assert again.version == SNAPSHOT_VERSION == 3
    assert again == msgspec.structs.replace(snap, version=3)
    assert all((o.type, o.tif, o.untriggered) == ("limit", "GTC", False) for o in again.orders)


def test_a_version_2_snapshot_still_decodes_as_gtc_limit_orders() -> None:
    """Written before section B: 12-field orders, no last trade price."""
    v2 = msgspec.msgpack.encode([
        2, "TST-USD", "15-0", "7-3", 12, 2, 5,
        [["10-0", "A", "a1", "buy", 100, 5, 2, 200, False, "cancel_taker", 1, 0]], [[0, 3]],
    ])
    snap = decode_snapshot(v2)
    assert snap.version == 2 and snap.last_price == 0 and snap.risk_seqs == [(0, 3)]
    (order,) = snap.orders
    assert (order.type, order.tif, order.stop_price, order.display_qty, order.untriggered) == (
        "limit", "GTC", 0, 0, False)
    book = restore_book(MARKET, snap)
    book._check()
    assert book.depth("buy") == [(100, 3)] and book.next_expiry is None

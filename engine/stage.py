"""What an engine serves: a *stage* (one market, or one risk shard) and its in-memory core.

The runner (``engine.runner``), the commit script, the lease and recovery
are the same for every stage: one input stream read through the ``engine``
consumer group, one ``:out`` entry per commit, a snapshot, a fencing epoch.
A stage supplies what differs: its deterministic core (the order book, or a
risk shard's ledger), how its snapshot and events decode, and what must
happen after a commit and after recovery (the risk stage forwards the
commands it accepted to the markets; a market does nothing).

:class:`MarketStage` is the market engine's; ``risk.stage`` has the risk
engine's. No I/O here beyond the hooks' ``topology`` argument.
"""

from __future__ import annotations

from typing import Protocol

from contract.events import Event, decode_events, encode_events
from contract.keys import MarketKeys
from contract.market import Market
from contract.snapshot import decode_snapshot, encode_snapshot
from contract.streams import RawEntry
from engine.topology import Topology
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import restore_book, take_snapshot

REPLAY_SLICE = 500
"""Entries applied per call during replay: events are dropped soon, so the GC stays cheap."""


class Core(Protocol):
    """A stage's deterministic state machine, fed raw input entries in id order."""

    @property
    def seq(self) -> int:
        """The last event seq it produced (equals the last seq in ``:out`` once committed)."""

    def apply(self, entries: list[RawEntry]) -> tuple[bytes, object | None]:
        """Apply ``entries``; returns the encoded events (b"" if none) and the side effects
        to run once they are committed (None if none: :meth:`Stage.after_commit`)."""

    def replay(self, entries: list[RawEntry]) -> None:
        """Apply already-committed entries, publishing nothing (recovery)."""

    def snapshot(self, last_input_id: str, last_out_id: str) -> bytes:
        """The encoded snapshot of the whole state. O(state)."""

    def summary(self) -> str:
        """A few logfmt fields describing the state (``seq=.. resting=..``)."""

    def next_due_ms(self) -> int | None:
        """The time (ms since the epoch) at which an input entry would change the state
        even if it carried nothing (a GTD order expiring), or None. The runner appends a
        clock entry of that time when none came by then. O(1)."""


class Stage(Protocol):
    """One unit an engine owns under one lease: its keys, core factory and commit hooks."""

    name: str
    """The hash tag of its keys: the market symbol, or ``acct-K``."""
    keys: MarketKeys

    def empty(self) -> Core:
        """The core before any input."""

    def restore(self, blob: bytes) -> tuple[Core, bytes, bytes]:
        """Core, last input id and last ``:out`` id of a snapshot; ``ValueError`` or
        ``msgspec.DecodeError`` if it is not this stage's."""

    def last_seq(self, events: bytes) -> int | None:
        """Seq of the last event in an ``:out`` entry's ``e`` field (None if empty)."""

    def before_commit(self, topology: Topology, node_key: str,
                      effects: object) -> tuple[bytes, int] | None:
        """The batch's side effects as commands to send ahead of its commit on the
        connection of ``node_key``'s node (RESP bytes, count), or None when they must wait
        for the commit (:meth:`after_commit` then runs them)."""

    def after_commit(self, topology: Topology, effects: object) -> None:
        """Run a committed batch's side effects (its ``apply`` returned them)."""

    def after_recover(self, topology: Topology, core: Core) -> None:
        """Run what recovery owes before new entries are served (the replay's side
        effects, which may or may not have run before the crash)."""


class MarketCore:
    """A market's order book as a stage core."""

    __slots__ = ("book",)

    def __init__(self, book: OrderBook) -> None:
        self.book = book

    @property
    def seq(self) -> int:
        return self.book.seq

    def apply(self, entries: list[RawEntry]) -> tuple[bytes, object | None]:
        events: list[Event] = []
        apply_entries(self.book, entries, events)
        return (encode_events(events) if events else b""), None

    def replay(self, entries: list[RawEntry]) -> None:
        for i in range(0, len(entries), REPLAY_SLICE):
            scratch: list[Event] = []
            apply_entries(self.book, entries[i:i + REPLAY_SLICE], scratch)

    def snapshot(self, last_input_id: str, last_out_id: str) -> bytes:
        return encode_snapshot(take_snapshot(self.book, last_input_id, last_out_id))

    def summary(self) -> str:
        return f"seq={self.book.seq} resting={len(self.book.orders)}"

    def next_due_ms(self) -> int | None:
        return self.book.next_expiry


class MarketStage:
    """The market engine's stage: one market's book on ``sx:{SYM}:*``."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.name = market.symbol
        self.keys = MarketKeys.of(market.symbol)

    def empty(self) -> MarketCore:
        return MarketCore(OrderBook(self.market))

    def restore(self, blob: bytes) -> tuple[MarketCore, bytes, bytes]:
        snap = decode_snapshot(blob)
        book = restore_book(self.market, snap)
        return MarketCore(book), snap.last_input_id.encode(), snap.last_out_id.encode()

    def last_seq(self, events: bytes) -> int | None:
        decoded = decode_events(events)
        return decoded[-1].seq if decoded else None

    def before_commit(self, topology: Topology, node_key: str,
                      effects: object) -> tuple[bytes, int] | None:
        """A market's commit has no side effect."""
        return None

    def after_commit(self, topology: Topology, effects: object) -> None:
        """A market's commit has no side effect."""

    def after_recover(self, topology: Topology, core: Core) -> None:
        """A market owes nothing after recovery."""

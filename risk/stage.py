"""A risk shard as an engine stage: the ledger behind the market engine's runner.

The runner (``engine.runner``) serves it exactly like a market: consumer
group on ``sx:{acct-K}:in``, lease + fencing epoch, one commit script per
batch on ``{acct-K}`` keys, snapshots and replay. What differs is here:

- the core is a ``ledger.core.Ledger``; a batch's side effects are the
  commands it accepted for the markets;
- :meth:`RiskStage.after_commit` forwards them, one pipeline per Redis node
  (``contract.streams.forward_entry``: each carries ``(K, risk_seq)`` and the
  order's id, and a market applies each ``(K, risk_seq)`` at most once);
- :meth:`RiskStage.after_recover` forwards again everything the replay
  accepted, since the snapshot: the crash may have come between a commit
  and its forwards. Whatever the markets already applied they drop. A
  snapshot is written only between rounds, after the last commit's forwards
  were acknowledged, so nothing accepted before it is owed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hiredis import pack_command

from contract.keys import in_stream
from contract.market import Market
from contract.risk import (
    RiskEvent,
    decode_risk_events,
    decode_risk_snapshot,
    encode_risk_events,
    encode_risk_snapshot,
    risk_keys,
    risk_tag,
)
from contract.streams import RawEntry
from engine.exceptions import ScriptMissing
from engine.scripts import APPEND_SCRIPT
from engine.stage import REPLAY_SLICE, Core
from engine.topology import Topology
from ledger.core import Ledger
from ledger.snapshot import restore_ledger, take_risk_snapshot

Forward = tuple[str, list[bytes]]
"""``(market symbol, flat fields of its :in entry)``."""


class RiskCore:
    """A shard's ledger as a stage core."""

    __slots__ = ("ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @property
    def seq(self) -> int:
        return self.ledger.seq

    def apply(self, entries: list[RawEntry]) -> tuple[bytes, object | None]:
        events: list[RiskEvent] = []
        self.ledger.apply_entries(entries, events)
        forwards = self.ledger.take_outbox()
        return (encode_risk_events(events) if events else b""), (forwards or None)

    def replay(self, entries: list[RawEntry]) -> None:
        for i in range(0, len(entries), REPLAY_SLICE):
            scratch: list[RiskEvent] = []
            self.ledger.apply_entries(entries[i:i + REPLAY_SLICE], scratch)

    def snapshot(self, last_input_id: str, last_out_id: str) -> bytes:
        return encode_risk_snapshot(take_risk_snapshot(self.ledger, last_input_id, last_out_id))

    def summary(self) -> str:
        return (f"seq={self.ledger.seq} risk_seq={self.ledger.risk_seq} "
                f"open_orders={len(self.ledger.orders)}")

    def next_due_ms(self) -> int | None:
        """A ledger has no clock-driven change."""
        return None


class RiskStage:
    """Risk shard ``shard`` of the accounts trading ``markets``."""

    def __init__(self, shard: int, markets: Sequence[Market], fee_account: str) -> None:
        self.shard = shard
        self.markets: Mapping[str, Market] = {m.symbol: m for m in markets}
        self.fee_account = fee_account
        self.name = risk_tag(shard)
        self.keys = risk_keys(shard)
        self.forwarded = 0

    def empty(self) -> RiskCore:
        return RiskCore(Ledger(self.shard, self.markets, self.fee_account))

    def restore(self, blob: bytes) -> tuple[RiskCore, bytes, bytes]:
        snap = decode_risk_snapshot(blob)
        if snap.shard != self.shard:
            raise ValueError(f"snapshot is of risk shard {snap.shard}, not {self.shard}")
        ledger = restore_ledger(self.markets, self.fee_account, snap)
        return RiskCore(ledger), snap.last_input_id.encode(), snap.last_out_id.encode()

    def last_seq(self, events: bytes) -> int | None:
        decoded = decode_risk_events(events)
        return decoded[-1].seq if decoded else None

    def after_commit(self, topology: Topology, effects: object) -> None:
        """XADD the committed batch's forwards to their markets' ``:in``; one round trip per
        node. A failure raises (the runner reconnects and recovery forwards them again)."""
        forwards: list[Forward] = effects  # type: ignore[assignment]
        self._forward(topology, forwards)

    def after_recover(self, topology: Topology, core: Core) -> None:
        assert isinstance(core, RiskCore)
        self._forward(topology, core.ledger.take_outbox())

    def before_commit(self, topology: Topology, node_key: str,
                      effects: object) -> tuple[bytes, int] | None:
        """The forwards, packed, when every target market lives on ``node_key``'s node (one
        server: always): they then travel in the commit's write. A market may receive them
        before the commit lands; if the commit then fails, recovery replays the same
        commands with the same ``risk_seq`` and the market drops the copies."""
        forwards: list[Forward] = effects  # type: ignore[assignment]
        node = topology.node_of(node_key)
        if any(topology.node_of(in_stream(s)) != node for s in {s for s, _ in forwards}):
            return None  # packed once, by after_commit
        calls = self._calls(forwards)
        self.forwarded += len(forwards)
        return b"".join(packed for _, packed in calls), len(calls)

    def _forward(self, topology: Topology, forwards: list[Forward]) -> None:
        """One ``APPEND`` per market, one pipeline per node; waits for the replies."""
        if not forwards:
            return
        calls = self._calls(forwards)
        try:
            topology.pipelined(calls)
        except ScriptMissing:  # the node restarted or failed over: load, then once more
            topology.load_scripts()
            topology.pipelined(calls)
        self.forwarded += len(forwards)

    @staticmethod
    def _calls(forwards: list[Forward]) -> list[tuple[str, bytes]]:
        """``(market :in, EVALSHA APPEND of its entries in order)`` per market. O(fields)."""
        by_market: dict[str, list[bytes]] = {}
        counts: dict[str, int] = {}
        for symbol, fields in forwards:
            flat = by_market.get(symbol)
            if flat is None:
                flat = by_market[symbol] = []
                counts[symbol] = 0
            flat.append(b"%d" % len(fields))
            flat += fields
            counts[symbol] += 1
        calls = []
        for symbol, flat in by_market.items():
            stream = in_stream(symbol)
            args: tuple[str | int | bytes, ...] = (
                "EVALSHA", APPEND_SCRIPT.sha, 1, stream, counts[symbol], *flat)
            packed: bytes = pack_command(args)  # type: ignore[arg-type]  # stub: a 1-tuple
            calls.append((stream, packed))
        return calls

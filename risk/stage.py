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
from contract.streams import FORWARD_ID_FIELD, FORWARD_SEQ_FIELD, IN_FIELD, RawEntry
from engine.exceptions import ScriptMissing
from engine.scripts import APPEND_SCRIPT
from engine.stage import REPLAY_SLICE, Core
from engine.topology import Topology
from ledger.core import Ledger
from ledger.snapshot import restore_ledger, take_risk_snapshot

Forward = tuple[str, list[bytes]]
"""``(market symbol, flat fields of its :in entry)``."""


class Forwards:
    """A batch's forwards as its side effects, packed once by :meth:`RiskCore.apply` (which
    the runner overlaps with the previous commit's round trip): ``calls`` are ``(market
    :in, EVALSHA APPEND of its entries)`` per market, ``count`` the entries in all."""

    __slots__ = ("count", "calls")

    def __init__(self, forwards: list[Forward]) -> None:
        self.count = len(forwards)
        self.calls = _calls(_by_market(forwards))


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
        return ((encode_risk_events(events) if events else b""),
                (Forwards(forwards) if forwards else None))

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
        assert isinstance(effects, Forwards)
        self._forward(topology, effects)

    def after_recover(self, topology: Topology, core: Core) -> None:
        assert isinstance(core, RiskCore)
        forwards = core.ledger.take_outbox()
        if forwards:
            self._forward(topology, Forwards(forwards))

    def before_commit(self, topology: Topology, node_key: str,
                      effects: object) -> tuple[bytes, int] | None:
        """The forwards, packed, when every target market lives on ``node_key``'s node (one
        server: always): they then travel in the commit's write. A market may receive them
        before the commit lands; if the commit then fails, recovery replays the same
        commands with the same ``risk_seq`` and the market drops the copies."""
        assert isinstance(effects, Forwards)
        calls = effects.calls
        node = topology.node_of(node_key)
        if any(topology.node_of(stream) != node for stream, _ in calls):
            return None  # sent by after_commit
        self.forwarded += effects.count
        return (calls[0][1] if len(calls) == 1 else b"".join(c for _, c in calls)), len(calls)

    def _forward(self, topology: Topology, forwards: Forwards) -> None:
        """One ``APPEND`` per market, one pipeline per node; waits for the replies."""
        calls = forwards.calls
        try:
            topology.pipelined(calls)
        except ScriptMissing:  # the node restarted or failed over: load, then once more
            topology.load_scripts()
            topology.pipelined(calls)
        self.forwarded += forwards.count


def _by_market(forwards: list[Forward]) -> dict[str, list[list[bytes]]]:
    """Each market's forwarded entries' fields, in order. O(forwards)."""
    by_market: dict[str, list[list[bytes]]] = {}
    for symbol, fields in forwards:
        entries = by_market.get(symbol)
        if entries is None:
            by_market[symbol] = [fields]
        else:
            entries.append(fields)
    return by_market


def _bulk(value: bytes) -> bytes:
    """RESP bulk string of ``value``."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


# An APPEND entry's arguments (field count, then the fields) for ``forward_entry``'s
# fields c, r, i, as RESP: these constants around each value and its length.
_HEAD_C = _bulk(b"6") + _bulk(IN_FIELD) + b"$"
_MID_R = b"\r\n" + _bulk(FORWARD_SEQ_FIELD) + b"$"
_MID_I = b"\r\n" + _bulk(FORWARD_ID_FIELD) + b"$"
_CRLF = b"\r\n"
_LENGTHS = [b"%d\r\n" % n for n in range(1024)]
"""``b"<n>\\r\\n"`` by ``n``: a bulk string's length line, after its ``$``."""


def _calls(by_market: dict[str, list[list[bytes]]]) -> list[tuple[str, bytes]]:
    """``(market :in, EVALSHA APPEND of its entries in order)`` per market: the bytes
    ``hiredis.pack_command`` gives for the same arguments, joined here at ~0.4 us per
    entry of ``forward_entry``'s shape (values under 1 KB; pack_command: ~1.7 us).
    O(fields)."""
    lengths = _LENGTHS
    calls = []
    for symbol, entries in by_market.items():
        stream = in_stream(symbol)
        parts = [b""]  # the header, once the argument count is known
        extend = parts.extend
        nargs = 5
        for fields in entries:
            if (len(fields) == 6 and fields[0] == IN_FIELD and fields[2] == FORWARD_SEQ_FIELD
                    and fields[4] == FORWARD_ID_FIELD):
                c, r, i = fields[1], fields[3], fields[5]
                try:
                    extend((_HEAD_C, lengths[len(c)], c, _MID_R, lengths[len(r)], r,
                            _MID_I, lengths[len(i)], i, _CRLF))
                    nargs += 7
                    continue
                except IndexError:  # a value of 1 KB or more
                    pass
            parts.append(_bulk(b"%d" % len(fields)))
            parts += [_bulk(f) for f in fields]
            nargs += 1 + len(fields)
        parts[0] = b"*%d\r\n%b%b%b%b%b" % (
            nargs, _bulk(b"EVALSHA"), _bulk(APPEND_SCRIPT.sha.encode()), _bulk(b"1"),
            _bulk(stream.encode()), _bulk(b"%d" % len(entries)))
        calls.append((stream, b"".join(parts)))
    return calls

"""Rebuild one stage's core (a market's book, a risk shard's ledger) on start or takeover.

Order of work (the engine holds the lease and a fresh epoch, so no other
engine can read or commit meanwhile):

1. :func:`ensure_group` creates the ``engine`` group (``MKSTREAM``, id 0).
2. :func:`load_snapshot` restores the core from ``:snap`` (or starts empty).
3. :func:`replay` applies ``:in`` after the snapshot's ``last_input_id`` up to
   the last applied id, in XRANGE chunks, publishing nothing: those events
   are already in ``:out``. :func:`check_out_seq` then asserts the core's
   ``seq`` equals the last event seq in ``:out``.
4. :func:`claim_pending` takes over every entry left pending (XAUTOCLAIM,
   cursor looped to ``0-0``), acknowledges those at or below the applied id
   and those deleted meanwhile, and returns the rest in id order: they must
   be applied and committed before any new (``>``) entry, which are younger.

:func:`recover` runs all four. Cost: O(snapshot + entries since it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from contract.ids import ZERO_ID, parse_id
from contract.keys import ENGINE_GROUP, MarketKeys
from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD, RawEntry
from engine.exceptions import RecoveryError
from engine.stage import Core, Stage
from engine.topology import Topology

log = logging.getLogger("streamex.engine")

REPLAY_CHUNK = 10_000
CLAIM_CHUNK = 1_000
_ACK_CHUNK = 10_000


@dataclass
class Recovered:
    """A stage's state after recovery; apply ``backlog`` before reading new entries."""

    core: Core
    applied: bytes
    last_out_id: bytes
    snapshot_input_id: bytes
    replayed: int = 0
    skipped: int = 0
    backlog: list[RawEntry] = field(default_factory=list)


def ensure_group(topology: Topology, keys: MarketKeys) -> None:
    """Create the ``engine`` group on ``:in`` at id 0 (and the stream); fine if it exists."""
    try:
        topology.call(keys.input, "XGROUP", "CREATE", keys.input, ENGINE_GROUP, "0", "MKSTREAM")
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def load_snapshot(topology: Topology, stage: Stage) -> tuple[Core, bytes, bytes]:
    """The core at the stored snapshot, its last input id and last ``:out`` id.

    No snapshot gives an empty core at ``0-0``. Raises :class:`RecoveryError`
    for a snapshot that cannot be decoded or belongs to another stage.
    """
    keys = stage.keys
    data = topology.call(keys.snap, "GET", keys.snap)
    if data is None:
        return stage.empty(), ZERO_ID, ZERO_ID
    try:
        return stage.restore(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise RecoveryError(f"{keys.snap}: unusable snapshot: {exc}") from None


def replay(topology: Topology, core: Core, keys: MarketKeys, after: bytes, upto: bytes,
           on_chunk: Callable[[], None] | None = None,
           chunk: int = REPLAY_CHUNK) -> tuple[int, bytes]:
    """Apply ``:in`` entries in ``(after, upto]`` to ``core`` without publishing.

    Returns ``(entries applied, last id applied)``; ``on_chunk`` runs between
    chunks (the runner renews its lease there). Cost: one XRANGE per
    ``chunk`` entries plus the matching; the XRANGEs go on a connection of
    their own, each sent before the chunk ahead of it is applied, so Redis
    reads the next chunk while this process matches.
    """
    count = 0
    last = after
    if parse_id(upto) <= parse_id(after):
        return 0, last
    reader = topology.hot(keys.input)
    try:
        reader.start_call("XRANGE", keys.input, b"(" + after if after != ZERO_ID else b"-",
                          upto, "COUNT", chunk)
        while True:
            entries: list[RawEntry] = reader.take_read()  # type: ignore[assignment]  # XRANGE
            if not entries:
                break
            last = entries[-1][0]
            more = len(entries) >= chunk and last != upto
            if more:
                reader.start_call("XRANGE", keys.input, b"(" + last, upto, "COUNT", chunk)
            core.replay(entries)
            count += len(entries)
            if not more:
                break
            if on_chunk is not None:
                on_chunk()
    finally:
        topology.drop(reader)
    return count, last


def check_out_seq(topology: Topology, stage: Stage, core: Core) -> bytes | None:
    """Assert the core's ``seq`` equals the last event seq in ``:out``; return that entry's id.

    None when ``:out`` is empty (nothing to compare). Raises
    :class:`RecoveryError` on a mismatch: replay would publish seqs that
    collide with (or leave a gap after) what subscribers already saw.
    """
    keys = stage.keys
    reply: list[Any] = topology.call(keys.output, "XREVRANGE", keys.output, "+", "-", "COUNT", 1)
    if not reply:
        return None
    out_id, fields = reply[0]
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    last_seq = stage.last_seq(values[OUT_EVENTS_FIELD])
    if last_seq is not None and last_seq != core.seq:
        raise RecoveryError(
            f"{keys.symbol}: replayed seq {core.seq} but {keys.output} ends at seq {last_seq} "
            f"(entry {out_id.decode()}, input {values.get(OUT_INPUT_FIELD, b'?').decode()})")
    out: bytes = out_id
    return out


def claim_pending(topology: Topology, keys: MarketKeys, consumer: str,
                  applied: bytes) -> tuple[list[RawEntry], int]:
    """Claim every pending entry of the group for ``consumer``; ack the ones not to apply.

    Returns ``(entries after applied, in id order; number acknowledged
    without applying)``. Entries at or below ``applied`` and entries deleted
    from the stream are acknowledged. Cost: one XAUTOCLAIM per 1,000 pending.
    """
    cursor = ZERO_ID
    claimed: list[RawEntry] = []
    done: list[bytes] = []
    while True:
        reply: list[Any] = topology.call(keys.input, "XAUTOCLAIM", keys.input, ENGINE_GROUP,
                                         consumer, 0, cursor, "COUNT", CLAIM_CHUNK)
        cursor = reply[0]
        for entry in reply[1]:
            if entry is None or entry[1] is None:  # deleted while pending (Redis 6.2 shape)
                if entry is not None:
                    done.append(entry[0])
            else:
                claimed.append(entry)
        if len(reply) > 2:
            done.extend(reply[2])  # ids deleted from the stream (Redis 7)
        if cursor == ZERO_ID:
            break
    claimed.sort(key=lambda e: parse_id(e[0]))
    floor = parse_id(applied)
    keep = [e for e in claimed if parse_id(e[0]) > floor]
    done.extend(e[0] for e in claimed if parse_id(e[0]) <= floor)
    for i in range(0, len(done), _ACK_CHUNK):
        topology.call(keys.input, "XACK", keys.input, ENGINE_GROUP, *done[i:i + _ACK_CHUNK])
    return keep, len(done)


def forget_idle_consumers(topology: Topology, keys: MarketKeys, consumer: str) -> int:
    """Delete the group's other consumers that hold no pending entry; returns how many."""
    removed = 0
    for info in topology.call(keys.input, "XINFO", "CONSUMERS", keys.input, ENGINE_GROUP):
        fields = dict(zip(info[::2], info[1::2], strict=True))
        name_b = fields[b"name"]
        if fields[b"pending"] == 0 and name_b != consumer.encode():
            topology.call(keys.input, "XGROUP", "DELCONSUMER", keys.input, ENGINE_GROUP, name_b)
            removed += 1
    return removed


def recover(topology: Topology, stage: Stage, consumer: str,
            on_chunk: Callable[[], None] | None = None) -> Recovered:
    """Snapshot + replay + claim for one stage; the caller holds the lease and epoch.

    Returns the core at the last applied id and the claimed backlog. Raises
    :class:`RecoveryError` if the streams disagree with the snapshot.
    """
    keys = stage.keys
    ensure_group(topology, keys)
    core, snap_input, snap_out = load_snapshot(topology, stage)
    applied_raw = topology.call(keys.applied, "GET", keys.applied)
    applied: bytes = applied_raw if isinstance(applied_raw, bytes) else ZERO_ID
    if parse_id(applied) < parse_id(snap_input):
        log.warning("event=applied_behind_snapshot market=%s applied=%s snapshot=%s",
                    keys.symbol, applied.decode(), snap_input.decode())
        applied = snap_input
    replayed, last = replay(topology, core, keys, snap_input, applied, on_chunk)
    if replayed and last != applied:
        log.warning("event=replay_short market=%s replayed_to=%s applied=%s",
                    keys.symbol, last.decode(), applied.decode())
    out_id = check_out_seq(topology, stage, core)
    backlog, skipped = claim_pending(topology, keys, consumer, applied)
    forget_idle_consumers(topology, keys, consumer)
    return Recovered(core=core, applied=applied, last_out_id=out_id or snap_out,
                     snapshot_input_id=snap_input, replayed=replayed, skipped=skipped,
                     backlog=backlog)

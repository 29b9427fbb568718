"""Copy each market's outcomes for a risk shard's accounts into the shard's input stream.

The risk engine settles fills, cancels and expiries from every market's
``:out``. Rather than read those streams inside its commit (a script may
touch one hash tag only), the :class:`Settler` copies, for each ``:out``
entry, the reports of the shard's accounts into ``sx:{acct-K}:in`` as one
``Settle`` command, and records how far it has read that market in
``sx:{acct-K}:positions`` -- both in one script on ``{acct-K}`` that first
checks the position it started from (compare-and-set). So every ``:out``
entry is copied exactly once, even by two settlers at once, and the risk
engine's state stays a pure function of its own input stream: replay needs
nothing else. ``new`` reports are not copied (:func:`settled`): the ledger
took the order's hold when it accepted it, and a ``new`` report changes no
balance, so an entry that holds nothing else for the shard (a passive order
resting) only moves the position, without waking the risk engine.

A ``Settler`` runs in a thread of the risk process, while that process owns
the shard (``epoch()`` is not None), and its script checks that epoch like a
commit: a paused process writes nothing once another took the shard over.
Cost per ``:out`` entry: one decode and a filter; per read: one XREAD and,
when it found this shard's reports, one script.
On a cluster every market is its own slot, and one XREAD may name one slot
only: the settler reads all of them without blocking, one pipeline per node,
and only when none had anything does it block on one of them for
``MULTI_NODE_BLOCK_MS`` -- so an idle cluster delays a settlement by at most
that, and a busy one not at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import redis
from redis.crc import key_slot

from contract.events import CancelRejected, Event, Report
from contract.ids import ZERO_ID
from contract.keys import out_stream
from contract.risk import Settle, encode_risk_command, positions_key, risk_keys, risk_shard
from contract.streams import IN_FIELD, events_of
from engine.exceptions import CommitConflict, Fenced, TopologyChanged
from engine.scripts import Script
from engine.topology import Topology

log = logging.getLogger("streamex.risk")

READ_COUNT = 512
SINGLE_NODE_BLOCK_MS = 1000
MULTI_NODE_BLOCK_MS = 20
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 2.0

# KEYS: risk in, positions, epoch.  ARGV: symbol, expected position, new position, epoch,
# commands...  -> number of Settle entries added; CONFLICT when another settler moved the
# position, FENCED when the shard was taken over (a paused settler writes nothing after).
SETTLE = """
local epoch = redis.call('GET', KEYS[3])
if epoch ~= ARGV[4] then
  return redis.error_reply('FENCED epoch is ' .. tostring(epoch) .. ', not ' .. ARGV[4])
end
local pos = redis.call('HGET', KEYS[2], ARGV[1]) or '0-0'
if pos ~= ARGV[2] then
  return redis.error_reply('CONFLICT position of ' .. ARGV[1] .. ' is ' .. pos)
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], '*', '""" + IN_FIELD.decode() + """', ARGV[i])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return #ARGV - 4
"""
SETTLE_SCRIPT = Script(SETTLE)


def settled(event: Event) -> TypeGuard[Report | CancelRejected]:
    """Whether the risk stage settles ``event`` of a market's ``:out``: every report but a
    ``new`` one (it changes no balance), and every cancel rejection (an amend's answer)."""
    return (isinstance(event, Report) and event.exec_type != "new") \
        or isinstance(event, CancelRejected)


def settle_commands(symbol: str, entries: Sequence[Any], shard: int,
                    shards: int) -> list[bytes]:
    """Encoded ``Settle`` commands for the shard's accounts' :func:`settled` events of raw
    ``:out`` entries.

    Entries with none of them give nothing. Pure; O(events).
    """
    commands = []
    for out_id, fields in entries:
        mine: list[Report | CancelRejected] = [
            e for e in events_of(fields)
            if settled(e) and risk_shard(e.account, shards) == shard]
        if mine:
            commands.append(encode_risk_command(Settle(symbol, out_id.decode(), mine)))
    return commands


class Settler:
    """Follows ``symbols``' ``:out`` for risk shard ``shard`` of ``shards``; call :meth:`run`."""

    def __init__(self, seeds: Sequence[str], symbols: Sequence[str], shard: int, shards: int,
                 epoch: Callable[[], int | None], cluster: bool = False) -> None:
        self.seeds = tuple(seeds)
        self.symbols = list(symbols)
        self.shard = shard
        self.shards = shards
        self.epoch = epoch
        self.cluster = cluster
        self.keys = risk_keys(shard)
        self.positions_key = positions_key(shard)
        self.settled = 0  # Settle commands added since start
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"settler-{self.shard}", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Copy until :meth:`stop`; Redis failures are retried with backoff (50 ms to 2 s)."""
        backoff = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            topology: Topology | None = None
            try:
                topology = Topology(self.seeds, cluster=self.cluster,
                                    socket_timeout_s=SINGLE_NODE_BLOCK_MS / 1000 + 10)
                self._serve(topology)
                return
            except (redis.ConnectionError, redis.TimeoutError, TopologyChanged,
                    CommitConflict, Fenced, redis.ResponseError) as exc:
                if not isinstance(exc, CommitConflict | Fenced):
                    log.warning("event=settler_retry shard=%d retry_in_s=%.2f error=%r",
                                self.shard, backoff, str(exc))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
            finally:
                if topology is not None:
                    topology.close()

    def _serve(self, topology: Topology) -> None:
        positions = self._positions(topology)
        owned: int | None = None
        while not self._stop.is_set():
            epoch = self.epoch()
            if epoch is None:
                owned = None
                self._stop.wait(0.05)
                continue
            if owned != epoch:  # (re)gained the shard: another settler may have moved on
                positions = self._positions(topology)
                owned = epoch
            groups = self._groups(topology)
            if len(groups) == 1:
                replies = [self._read(topology, positions, groups[0], SINGLE_NODE_BLOCK_MS)]
            else:
                replies = topology.pipelined([(g[0], _xread(positions, g)) for g in groups])
                if not any(replies):
                    replies = [self._read(topology, positions, groups[0], MULTI_NODE_BLOCK_MS)]
            for reply in replies:
                for stream, entries in reply or ():
                    self._copy(topology, positions, stream.decode(), entries, epoch)

    @staticmethod
    def _read(topology: Topology, positions: dict[str, bytes], streams: list[str],
              block_ms: int) -> Any:
        return topology.call(streams[0], *_xread(positions, streams, block_ms))

    def _copy(self, topology: Topology, positions: dict[str, bytes], stream: str,
              entries: list[Any], epoch: int) -> None:
        symbol = stream.split("{", 1)[1].split("}", 1)[0]
        new_position: bytes = entries[-1][0]
        commands = settle_commands(symbol, entries, self.shard, self.shards)
        SETTLE_SCRIPT(topology.control(self.keys.input),
                      (self.keys.input, self.positions_key, self.keys.epoch),
                      symbol, positions[stream], new_position, epoch, *commands)
        positions[stream] = new_position
        self.settled += len(commands)

    def _positions(self, topology: Topology) -> dict[str, bytes]:
        """``:out`` stream -> the id settled up to (``0-0``: from the start)."""
        stored = topology.call(self.positions_key, "HGETALL", self.positions_key) or []
        by_symbol = {stored[i].decode(): stored[i + 1] for i in range(0, len(stored), 2)}
        return {out_stream(s): by_symbol.get(s, ZERO_ID) for s in self.symbols}

    def _groups(self, topology: Topology) -> list[list[str]]:
        """The ``:out`` streams one XREAD may name together: all on one server, one per
        slot on a cluster (every market is its own hash tag)."""
        streams = [out_stream(s) for s in self.symbols]
        if not topology.cluster:
            return [streams]
        by_slot: dict[int, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(key_slot(stream.encode()), []).append(stream)
        return list(by_slot.values())


def _xread(positions: dict[str, bytes], streams: list[str],
           block_ms: int | None = None) -> list[str | int | bytes]:
    """``XREAD`` of ``streams`` after their positions (blocking ``block_ms`` if given)."""
    block: list[str | int | bytes] = [] if block_ms is None else ["BLOCK", block_ms]
    return ["XREAD", "COUNT", READ_COUNT, *block, "STREAMS", *streams,
            *(positions[s] for s in streams)]


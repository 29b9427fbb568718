"""The shape of the Redis stream entries, shared by every process.

- ``sx:{SYM}:in``: one entry per command, field ``c`` = msgpack ``Command``
  (``contract.commands.encode_command``). The entry id is the order id of a
  place and the time (ms) of every event it causes.
- ``sx:{SYM}:out``: one entry per engine commit (a batch of commands), field
  ``e`` = msgpack ``list[Event]`` in ``seq`` order, and field ``in`` = the
  last input entry id the batch applied.
- ``sx:{SYM}:snap``: ``contract.snapshot.encode_snapshot`` bytes.
- A market ``:in`` entry forwarded by the risk stage also has fields ``r``
  and ``i`` (:func:`forward_entry`); ``sx:{acct-K}:*`` streams have the same
  ``c``/``e``/``in`` fields with the risk stage's types (``contract.risk``).

Key names live in ``contract.keys``; this module has no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contract.commands import Command, encode_command
from contract.events import Event, decode_events

IN_FIELD = b"c"
FORWARD_SEQ_FIELD = b"r"
"""On a market ``:in`` entry the risk stage forwarded: ``b"<shard>:<risk_seq>"``."""
FORWARD_ID_FIELD = b"i"
"""On such an entry: the order/request id (the risk input entry's, ``stage_order_id``);
the market engine uses it instead of its own entry id."""
OUT_EVENTS_FIELD = b"e"
OUT_INPUT_FIELD = b"in"

RawEntry = list[Any]
"""A stream entry as Redis returns it raw: ``[id, [field, value, ...]]``; the field list is
None for an entry deleted while pending (XAUTOCLAIM, Redis 6.2)."""


def in_entry(cmd: Command) -> dict[bytes, bytes]:
    """Fields of the ``:in`` entry for ``cmd`` (pass to XADD)."""
    return {IN_FIELD: encode_command(cmd)}


def forward_entry(command: bytes, shard: int, risk_seq: int, input_id: str) -> list[bytes]:
    """Flat fields of a market ``:in`` entry forwarded by risk shard ``shard``.

    The market engine applies it at most once per ``(shard, risk_seq)``:
    it drops an entry whose ``risk_seq`` is not above the highest it has
    applied from that shard (kept in its state and snapshot).
    """
    return [IN_FIELD, command, FORWARD_SEQ_FIELD, b"%d:%d" % (shard, risk_seq),
            FORWARD_ID_FIELD, input_id.encode()]


def parse_forward_seq(value: bytes) -> tuple[int, int]:
    """``b"<shard>:<risk_seq>"`` -> ``(shard, risk_seq)``; ``ValueError`` if malformed."""
    shard, sep, seq = value.partition(b":")
    if not sep:
        raise ValueError("forward seq: no ':'")
    return int(shard), int(seq)


Fields = Mapping[bytes, bytes] | Sequence[bytes]
"""An entry's fields: a mapping (redis-py's replies) or a flat ``[name, value, ...]`` list
(raw replies, see ``redisio.tail``)."""


def field_of(fields: Fields, name: bytes) -> bytes | None:
    """The value of field ``name``, or None. O(fields)."""
    if isinstance(fields, Mapping):
        return fields.get(name)
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


def events_of(fields: Fields) -> list[Event]:
    """Events of an ``:out`` entry, in ``seq`` order; ``KeyError`` if it has none."""
    data = field_of(fields, OUT_EVENTS_FIELD)
    if data is None:
        raise KeyError(OUT_EVENTS_FIELD)
    return decode_events(data)

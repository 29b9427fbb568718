"""The shape of the Redis stream entries, shared by every process.

- ``sx:{SYM}:in``: one entry per command, field ``c`` = msgpack ``Command``
  (``contract.commands.encode_command``). The entry id is the order id of a
  place and the time (ms) of every event it causes.
- ``sx:{SYM}:out``: one entry per engine commit (a batch of commands), field
  ``e`` = msgpack ``list[Event]`` in ``seq`` order, and field ``in`` = the
  last input entry id the batch applied.
- ``sx:{SYM}:snap``: ``contract.snapshot.encode_snapshot`` bytes.

Key names live in ``contract.keys``; this module has no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contract.commands import Command, encode_command
from contract.events import Event, decode_events

IN_FIELD = b"c"
OUT_EVENTS_FIELD = b"e"
OUT_INPUT_FIELD = b"in"

RawEntry = list[Any]
"""A stream entry as Redis returns it raw: ``[id, [field, value, ...]]``; the field list is
None for an entry deleted while pending (XAUTOCLAIM, Redis 6.2)."""


def in_entry(cmd: Command) -> dict[bytes, bytes]:
    """Fields of the ``:in`` entry for ``cmd`` (pass to XADD)."""
    return {IN_FIELD: encode_command(cmd)}


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

"""The shape of the Redis stream entries, shared by every process.

- ``sx:{SYM}:in``: one entry per command, field ``c`` = msgpack ``Command``
  (``engine.messages.encode_command``). The entry id is the order id of a
  place and the time (ms) of every event it causes.
- ``sx:{SYM}:out``: one entry per engine commit (a batch of commands), field
  ``e`` = msgpack ``list[Event]`` in ``seq`` order, and field ``in`` = the
  last input entry id the batch applied.
- ``sx:{SYM}:snap``: ``engine.snapshot.encode_snapshot`` bytes.

Key names live in ``engine.keys``; this module has no I/O.
"""

from __future__ import annotations

from engine.messages import Command, Event, decode_events, encode_command

IN_FIELD = b"c"
OUT_EVENTS_FIELD = b"e"
OUT_INPUT_FIELD = b"in"


def in_entry(cmd: Command) -> dict[bytes, bytes]:
    """Fields of the ``:in`` entry for ``cmd`` (pass to XADD)."""
    return {IN_FIELD: encode_command(cmd)}


def events_of(fields: dict[bytes, bytes]) -> list[Event]:
    """Events of an ``:out`` entry, in ``seq`` order."""
    return decode_events(fields[OUT_EVENTS_FIELD])

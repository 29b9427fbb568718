"""Redis stream entry ids (``"<ms>-<n>"``): the one parser every process uses.

An entry id is an order's id (the id of its ``place`` entry) and, through
its milliseconds, the time of everything the entry caused. Ids compare as
``(ms, n)`` integer pairs, never as strings (``"9-0" > "10-0"`` as text).
No I/O; each function is O(len(id)).
"""

from __future__ import annotations

ZERO_ID = b"0-0"
"""The id before every entry (XRANGE/XREAD start, "nothing applied yet")."""


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """``"<ms>-<n>"`` (bytes or str) as ``(ms, n)``, which orders like stream ids.

    A bare ``"<ms>"`` means ``(ms, 0)``. Raises ``ValueError`` for anything
    that is not made of decimal digits.
    """
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, n = text.partition("-")
    n, _, _shard = n.partition("-")  # an order id of risk shard K > 0 ends in "-K"
    return int(ms), int(n or 0)


def ts_of(entry_id: str) -> int:
    """Milliseconds part of an entry id ``"<ms>-<n>"``: the time of the entry."""
    return int(entry_id.partition("-")[0])


def stage_order_id(entry_id: bytes | str, shard: int) -> str:
    """The order (or request) id of a risk-stage input entry of shard ``shard``.

    Shard 0 keeps the entry id (``"<ms>-<n>"``, as without the risk stage);
    shard K > 0 appends ``"-K"`` (``"<ms>-<n>-K"``) so ids of different shards
    never collide in one market. :func:`parse_id` and :func:`ts_of` read both.
    """
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return text if shard == 0 else f"{text}-{shard}"

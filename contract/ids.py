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


ORDER_NUMBER_EPOCH_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: order numbers count milliseconds from here (41 bits last to 2089)."""
_SEQ_BITS = 14
_SHARD_BITS = 8


def order_number(order_id: str) -> int:
    """The integer ``orderId`` of REST (PROTOCOL.md, section D) for a streamex order id.

    ``(ms - 2020-01-01) << 22 | n << 8 | shard``: stable, unique per market, below
    2**63 (a signed 64-bit integer, as Binance's), ordered like the ids of one shard.
    Raises ``ValueError`` for an id that does not fit (``n`` >= 16,384 entries in one
    millisecond of one stream, or shard >= 256) or is not an order id. O(len).
    """
    ms_text, _, rest = order_id.partition("-")
    n_text, _, shard_text = rest.partition("-")
    ms, n, shard = int(ms_text), int(n_text or 0), int(shard_text or 0)
    ms -= ORDER_NUMBER_EPOCH_MS
    if not (0 <= ms < 1 << 41 and 0 <= n < 1 << _SEQ_BITS and 0 <= shard < 1 << _SHARD_BITS):
        raise ValueError(f"order id {order_id!r} has no order number")
    return ms << (_SEQ_BITS + _SHARD_BITS) | n << _SHARD_BITS | shard


def order_id_of_number(number: int) -> str:
    """The streamex order id whose :func:`order_number` is ``number``; ``ValueError`` if
    ``number`` is negative or too big. O(1)."""
    if not 0 <= number < 1 << 63:
        raise ValueError(f"order number {number} out of range")
    shard = number & ((1 << _SHARD_BITS) - 1)
    n = (number >> _SHARD_BITS) & ((1 << _SEQ_BITS) - 1)
    ms = (number >> (_SEQ_BITS + _SHARD_BITS)) + ORDER_NUMBER_EPOCH_MS
    return stage_order_id(f"{ms}-{n}", shard)

"""The market engine's snapshot (``sx:{SYM}:snap``) as msgpack: the schema every process reads.

A snapshot holds every resting order in priority order, the counters
(``seq``, ``trade_id``, priority) and where the streams stood: the last input
entry applied and the last ``:out`` entry written. The engine writes it
(``matching.snapshot`` takes and restores the book); the gateway and market
data load it to start their views. Cost: O(number of resting orders).

Versions: 2 appended ``RestingOrder.fee_num`` and ``Snapshot.risk_seqs``;
3 (written) appended the order types of section B: ``RestingOrder.type``,
``tif``, ``stop_price``, ``expire_time``, ``display_qty``, ``visible``,
``untriggered``, ``quote_qty`` and ``Snapshot.last_price``. Older snapshots
still decode, with their defaults (GTC limit orders, no fees charged yet, no
forwarded command applied, no trade printed).
"""

from __future__ import annotations

import msgspec

SNAPSHOT_VERSION = 3
READABLE_VERSIONS = frozenset({1, 2, 3})
"""Versions :func:`decode_snapshot` accepts."""


class RestingOrder(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One open order: resting in the book, or (``untriggered``) a stop waiting off-book.

    ``visible`` is the part of an iceberg (``display_qty`` > 0) the book shows;
    ``quote_qty`` the budget of an untriggered stop market buy.
    """

    order_id: str
    account: str
    client_order_id: str | None
    side: str
    price: int
    qty: int
    cum_qty: int
    cum_notional: int
    post_only: bool
    stp: str
    prio: int
    fee_num: int = 0
    """Its exact fees so far times the market's ``fee_den`` (``Market.fee``); v2."""
    type: str = "limit"
    tif: str = "GTC"
    stop_price: int = 0
    expire_time: int = 0
    display_qty: int = 0
    visible: int = 0
    untriggered: bool = False
    quote_qty: int = 0


class Snapshot(msgspec.Struct, array_like=True, frozen=True):
    """The whole state of one market's engine at ``last_input_id``.

    ``orders`` are bids best-first then asks best-first, each level in time
    priority, then the untriggered stops in placement order. ``last_out_id`` is
    the ``:out`` entry holding event ``seq``. ``risk_seqs`` (v2): ``(risk shard,
    highest risk_seq applied from it)``, ascending by shard (``matching.apply``).
    ``last_price`` (v3): the price of the market's last trade, 0 before the first.
    """

    version: int
    symbol: str
    last_input_id: str
    last_out_id: str
    seq: int
    trade_id: int
    prio: int
    orders: list[RestingOrder]
    risk_seqs: list[tuple[int, int]] = msgspec.field(default_factory=list)
    last_price: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def encode_snapshot(snap: Snapshot) -> bytes:
    return _encoder.encode(snap)


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode a snapshot; raises ``msgspec.DecodeError`` or ``ValueError`` if foreign."""
    snap = _decoder.decode(data)
    if snap.version not in READABLE_VERSIONS:
        raise ValueError(f"snapshot version {snap.version} is not one of "
                         f"{sorted(READABLE_VERSIONS)}")
    return snap

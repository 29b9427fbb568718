"""Raw input entries -> the book: the one path both live serving and replay take.

Sans-I/O: entries are ``[id, [field, value, ...]]`` as Redis returns them
(``contract.streams``), decoded here with the one command decoder of
``contract.commands``.

An entry the risk stage forwarded (``contract.streams.forward_entry``) also
carries ``r`` = ``b"<shard>:<risk_seq>"`` and ``i`` = the order/request id.
It is applied at most once per ``(shard, risk_seq)``: one whose ``risk_seq``
is not above ``book.risk_seqs[shard]`` (the highest applied from that shard,
kept in the book's state and snapshot) is dropped without any event;
otherwise the seq is recorded and the command applied with ``i`` as its id
(order id of a place, request id of a cancel/amend rejection, ``input_id`` of
an ``InputRejected``), while every event's ``ts`` is the milliseconds of the
market's own entry id. A forwarded entry with a malformed ``r`` or no ``i``
is answered ``InputRejected`` ``BAD_REQUEST`` (under the entry's own id) and
records nothing.
"""

from __future__ import annotations

import logging

import msgspec

from contract import errors
from contract.commands import Command, decode_command
from contract.events import Event
from contract.streams import (
    FORWARD_ID_FIELD,
    FORWARD_SEQ_FIELD,
    IN_FIELD,
    RawEntry,
    parse_forward_seq,
)
from matching.book import OrderBook

log = logging.getLogger("streamex.engine")

_DECODE_ERRORS = (msgspec.DecodeError, ValueError, TypeError)


def _command_field(fields: list[bytes]) -> bytes:
    """The ``c`` value of an entry's flat field list; raises ``ValueError`` if absent."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == IN_FIELD:
            return fields[i + 1]
    raise ValueError("no command field")


def apply_entries(book: OrderBook, entries: list[RawEntry], events: list[Event]) -> None:
    """Apply raw input entries in order, appending their events to ``events``.

    An entry that cannot be decoded (bad msgpack, wrong shape, no ``c`` field)
    is answered with an ``InputRejected`` event and otherwise skipped. Used
    both live and for replay, so both produce the same seqs. Cost: the
    matching plus ~0.4 us of decoding per entry; an entry with more fields
    than ``c`` (a forwarded one) takes :func:`_apply_other`, ~1 us more.
    """
    decode = decode_command
    apply_into = book.apply_into
    for entry_id, fields in entries:
        input_id = entry_id.decode()
        try:
            if len(fields) == 2 and fields[0] == IN_FIELD:
                cmd = decode(fields[1])
            else:
                _apply_other(book, input_id, fields, events)
                continue
        except _DECODE_ERRORS:
            events += book.reject_input(input_id)
            continue
        seq = book.seq
        mark = len(events)
        try:
            apply_into(input_id, cmd, events)
        except Exception:  # a matching bug must not crash-loop the market; replay does the same
            log.exception("event=apply_failed market=%s input_id=%s", book.symbol, input_id)
            del events[mark:]
            book.seq = seq
            events += book.reject_command(input_id, cmd, errors.INTERNAL)


def _apply_other(book: OrderBook, input_id: str, fields: list[bytes],
                 events: list[Event]) -> None:
    """An entry whose fields are not just ``c``: a forwarded one, or one with extra fields.

    Raises ``ValueError``/``TypeError``/``msgspec.DecodeError`` for an entry
    that is not forwarded and cannot be decoded (the caller rejects it).
    """
    seq_field = order_field = None
    for k in range(0, len(fields) - 1, 2):
        name = fields[k]
        if name == FORWARD_SEQ_FIELD and seq_field is None:
            seq_field = fields[k + 1]
        elif name == FORWARD_ID_FIELD and order_field is None:
            order_field = fields[k + 1]
    if seq_field is None:
        cmd = decode_command(_command_field(fields))
        _apply_guarded(book, input_id, None, cmd, events)
        return
    try:
        shard, risk_seq = parse_forward_seq(seq_field)
        if shard < 0 or risk_seq < 0 or order_field is None:
            raise ValueError("forwarded entry: bad r or no i")
        order_id = order_field.decode()
        if not order_id:
            raise ValueError("forwarded entry: empty i")
    except (ValueError, TypeError, AttributeError):
        events += book.reject_input(input_id)
        return
    risk_seqs = book.risk_seqs
    if risk_seq <= risk_seqs.get(shard, -1):
        return  # applied already (a re-forward after a risk engine's restart)
    risk_seqs[shard] = risk_seq
    ts = int(input_id.partition("-")[0])
    try:
        cmd = decode_command(_command_field(fields))
    except _DECODE_ERRORS:
        events += book.reject_input(order_id, errors.BAD_REQUEST, ts)
        return
    _apply_guarded(book, order_id, ts, cmd, events)


def _apply_guarded(book: OrderBook, order_id: str, ts: int | None, cmd: Command,
                   events: list[Event]) -> None:
    """Apply ``cmd`` under ``order_id`` (at ``ts``, else the id's ms); a crash -> INTERNAL."""
    seq = book.seq
    mark = len(events)
    try:
        book.apply_into(order_id, cmd, events, ts)
    except Exception:  # as in apply_entries
        log.exception("event=apply_failed market=%s input_id=%s", book.symbol, order_id)
        del events[mark:]
        book.seq = seq
        events += book.reject_command(order_id, cmd, errors.INTERNAL, ts)

"""The engine's hot-path connection: a commit pipelined with the read of new entries.

:class:`CommitChannel` writes ``EVALSHA COMMIT`` (``engine.scripts``) and an
``XREADGROUP`` of new entries without waiting; the caller applies the next
batch while Redis works, then takes both replies. One round trip per batch.
Commands are packed in C (hiredis) or by :func:`resp_command`, and replies
read raw. Errors of the commit come back as the exceptions of
``engine.exceptions``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import redis
from hiredis import pack_command

from contract.keys import ENGINE_GROUP, MarketKeys
from contract.streams import RawEntry
from engine.scripts import COMMIT_SCRIPT, script_error

StreamEntries = list[tuple[bytes, list[RawEntry]]]
"""A raw XREADGROUP reply: ``[(input stream key, entries), ...]``."""


def _pack(*args: str | int | bytes) -> bytes:
    """One command in RESP, packed by hiredis (C)."""
    packed: bytes = pack_command(args)  # type: ignore[arg-type]  # the stub wants a 1-tuple
    return packed


def resp_command(head: Sequence[str | int | bytes], tail: Sequence[bytes]) -> bytes:
    """``head + tail`` as one RESP command, the same bytes as ``hiredis.pack_command``.

    For the commit's long argument lists: hiredis spends ~55 us copying a
    60 KB events argument and ~70 ns per short one; here the big argument is
    copied once and a batch's entry ids (``tail``) are joined in C, one join
    per run of ids of the same length (``<ms>-<n>`` ids change length a few
    times per millisecond). ~12-16 us for a commit of 512 ids, against ~110.
    """
    parts = [b"*%d\r\n" % (len(head) + len(tail))]
    for arg in head:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    for length, run in groupby(tail, len):
        prefix = b"$%d\r\n" % length
        parts.append(prefix)
        parts.append((b"\r\n" + prefix).join(run))
        parts.append(b"\r\n")
    return b"".join(parts)


def _read_command(consumer: str, count: int, streams: Sequence[str], block_ms: int | None
                  ) -> bytes:
    block: tuple[str | int, ...] = () if block_ms is None else ("BLOCK", block_ms)
    return _pack("XREADGROUP", "GROUP", ENGINE_GROUP, consumer, "COUNT", count, *block,
                 "STREAMS", *streams, *(">" for _ in streams))


class CommitChannel:
    """A dedicated connection to one node: the engine's commits, reads and other calls.

    :meth:`send` writes ``EVALSHA COMMIT`` followed by an ``XREADGROUP`` of
    new entries (when ``read_count`` > 0) without waiting; the caller may
    apply the next batch while Redis works, then calls :meth:`receive`. One
    round trip per batch. When the market would otherwise go idle the read
    can BLOCK and be *held*: :meth:`receive` returns after the commit's reply
    and the read stays in flight, on the server, until entries arrive; the
    caller watches :meth:`fileno` with ``select`` and :meth:`buffered` (several
    markets' connections at once) and collects it with :meth:`take_read`. While a read
    is held the connection takes no other command. :meth:`start_read` holds a
    read alone, :meth:`read` waits for one, :meth:`call` runs any command.
    Commands are packed in C (hiredis) or by :func:`resp_command`, and replies
    read raw: ~20 us less Python per call than redis-py's ``execute_command``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._conn: Any = self._pool.get_connection()  # redis-py's Connection is untyped
        self._reading = False
        self._held = False
        self._before = 0

    @property
    def read_held(self) -> bool:
        """True while a held read's reply has not been taken."""
        return self._held

    def send(self, keys: MarketKeys, epoch: int, consumer: str, prev_applied: bytes,
             ids: list[bytes], events: bytes, read_count: int,
             read_streams: Sequence[str], block_ms: int | None = None,
             hold_read: bool = False, before: tuple[bytes, int] | None = None) -> None:
        """Publish ``events`` (encoded, b"" for none), record ``ids[-1]``, XACK ``ids``.

        Then read up to ``read_count`` new entries of ``read_streams`` (none
        when 0), waiting up to ``block_ms`` for the first if given; with
        ``hold_read`` that read's reply is left for :meth:`take_read`.
        ``before``: commands already in RESP, and how many, sent first in the
        same write (a stage's side effects that may precede its commit);
        :meth:`receive` raises the first error among their replies.
        """
        assert not self._held, "a held read is in flight on this connection"
        self._before = 0 if before is None else before[1]
        packed = (b"" if before is None else before[0]) + resp_command((
            "EVALSHA", COMMIT_SCRIPT.sha, 4, keys.input, keys.epoch, keys.output, keys.applied,
            epoch, ENGINE_GROUP, consumer, prev_applied, ids[-1], events), ids)
        if read_count:  # one write (redis-py sends each list item with its own sendall)
            packed += _read_command(consumer, read_count, read_streams, block_ms)
        self._reading = bool(read_count) and not hold_read
        self._conn.send_packed_command([packed])
        self._held = bool(read_count) and hold_read

    def receive(self) -> tuple[bytes | None, float, StreamEntries]:
        """``(out entry id or None, perf_counter() at the commit's reply, entries read)``.

        The entries are ``[]`` when the read is held. Raises :class:`Fenced`,
        :class:`StateLost` or :class:`CommitConflict` (nothing committed;
        entries read meanwhile stay pending, for recovery).
        """
        error: redis.ResponseError | None = None
        out_id: bytes | None = None
        entries: StreamEntries = []
        for _ in range(self._before):
            try:
                self._conn.read_response()
            except redis.ResponseError as exc:
                error = error or exc
        self._before = 0
        try:
            out_id = self._conn.read_response()
        except redis.ResponseError as exc:
            error = exc
        committed_at = time.perf_counter()
        if self._reading:
            self._reading = False
            try:
                entries = self._conn.read_response() or []
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise script_error(error) from None
        return out_id, committed_at, entries

    def start_read(self, consumer: str, count: int, streams: Sequence[str],
                   block_ms: int | None) -> None:
        """Send a read whose reply :meth:`take_read` collects (it is held meanwhile)."""
        assert not self._held, "a held read is in flight on this connection"
        self._conn.send_packed_command([_read_command(consumer, count, streams, block_ms)])
        self._held = True

    def start_call(self, *args: str | int | bytes) -> None:
        """Send one command now; :meth:`take_read` collects its reply (held meanwhile),
        so the caller can work while Redis does (replay applies a chunk so)."""
        assert not self._held, "a held read is in flight on this connection"
        self._conn.send_packed_command([_pack(*args)])
        self._held = True

    def read(self, consumer: str, count: int, streams: Sequence[str], block_ms: int | None
             ) -> StreamEntries:
        """New entries of ``streams`` (up to ``count`` each), waiting up to ``block_ms``."""
        self.start_read(consumer, count, streams, block_ms)
        return self.take_read()

    def buffered(self) -> bool:
        """True when (part of) the held read's reply is already read from the socket.

        No system call: the bytes are in the parser's buffer, so ``select`` on
        the socket would not see them. O(1).
        """
        reader = getattr(self._conn._parser, "_reader", None)
        return self._held and reader is not None and bool(reader.has_data())

    def fileno(self) -> int:
        """The socket, for ``select`` over several connections' held reads."""
        sock = self._conn._sock
        if sock is None:
            raise redis.ConnectionError("the connection is closed")
        return int(sock.fileno())

    def take_read(self) -> StreamEntries:
        """The held read's entries (waits for them); raises its error mapped like a commit's."""
        assert self._held, "no read is held"
        self._held = False
        try:
            reply: StreamEntries = self._conn.read_response() or []
        except redis.ResponseError as exc:
            raise script_error(exc) from None
        return reply

    def call(self, *args: str | int | bytes) -> Any:
        """One command, its raw reply (redis-py's ``ResponseError`` for an error reply)."""
        assert not self._held, "a held read is in flight on this connection"
        self._conn.send_packed_command([_pack(*args)])
        return self._conn.read_response()

    def pipeline(self, commands: Sequence[Sequence[str | int | bytes] | bytes]) -> list[Any]:
        """Run ``commands`` (argument lists, or commands already in RESP) in one write and
        one round trip; their raw replies in order.

        Every reply is read even when one is an error; then the first error
        is raised, mapped like a commit's (``TopologyChanged`` for MOVED).
        """
        assert not self._held, "a held read is in flight on this connection"
        self._conn.send_packed_command([b"".join(
            c if isinstance(c, bytes) else _pack(*c) for c in commands)])
        replies: list[Any] = []
        error: redis.ResponseError | None = None
        for _ in commands:
            try:
                replies.append(self._conn.read_response())
            except redis.ResponseError as exc:
                error = error or exc
                replies.append(exc)
        if error is not None:
            raise script_error(error) from None
        return replies

    def close(self) -> None:
        self._conn.disconnect()
        self._pool.release(self._conn)

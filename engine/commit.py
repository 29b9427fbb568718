"""One market's batch: apply input entries to the book, then commit them atomically.

The engine changes Redis state only through the server-side Lua scripts
below, each touching the keys of one market (one hash tag, so Redis Cluster
works):

- ``ACQUIRE``: take the lease (``SET PX`` when free or already ours) and
  ``INCR`` the fencing epoch. A takeover always gets a new epoch.
- ``RENEW``: compare-and-renew the lease, only while the epoch is still ours.
- ``COMMIT``: check the epoch, the last applied id and that no other
  consumer holds pending entries, then ``XADD`` the batch's events as one
  ``:out`` entry, record the last applied input id and ``XACK`` the batch. A
  script that passes its checks cannot fail halfway: all or nothing.
  :class:`CommitChannel` pipelines it with the plain ``XREADGROUP`` of the
  next batch (one round trip) and lets the caller apply a batch meanwhile.
- ``SNAPSHOT``: write the snapshot, then trim ``:in`` with ``MINID`` to the
  snapshot's last input id (never past it) and ``:out`` by retention.
- ``RELEASE``: drop the lease on a clean stop so a standby takes over at once.

Reads are plain ``XREADGROUP`` (reading inside a script costs ~1 us per entry
of Lua conversion). A paused engine (a zombie) may therefore still take
delivery of entries after another engine took over; they then sit pending
under its name, so the owner's next commit fails with :class:`Stolen`
before anything is published, and the owner recovers (claiming them back, in
id order). The zombie's own commits fail on the epoch.

Script errors come back as :class:`Fenced` (another engine owns the market),
:class:`StateLost` (the epoch key or group vanished: Redis lost its data) or
:class:`CommitConflict` (the applied id moved, entries were stolen, or the
script is missing). The caller stops on the first and re-runs recovery on
the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import msgspec
import redis
from hiredis import pack_command

from engine import errors
from engine.book import OrderBook
from engine.keys import (
    ENGINE_GROUP,
    applied_key,
    epoch_key,
    in_stream,
    lease_key,
    out_stream,
    snap_key,
)
from engine.messages import Command, Event
from engine.streams import IN_FIELD, OUT_EVENTS_FIELD, OUT_INPUT_FIELD

log = logging.getLogger("streamex.engine")

#: A raw stream entry as Redis returns it: ``[id, [field, value, ...]]``;
#: the field list is None for an entry deleted while pending (XAUTOCLAIM, Redis 6.2).
RawEntry = list[Any]

# Largest number of ids passed to one XACK inside a script (Lua's unpack limit is ~8000).
_ACK_CHUNK = 4000


class Fenced(Exception):
    """Another engine owns the market (its epoch or lease is newer): stop."""


class StateLost(Exception):
    """The market's epoch key is gone (Redis restarted without its data): recover again."""


class CommitConflict(Exception):
    """The recorded last applied id is not the one this engine expected: recover again."""


class Stolen(CommitConflict):
    """Another consumer took delivery of entries (a zombie's read): recover, claiming them."""


class ScriptMissing(CommitConflict):
    """NOSCRIPT in a pipelined commit (nothing was committed): reload and recover."""


@dataclass(frozen=True, slots=True)
class MarketKeys:
    """Every Redis key of one market, all with the same hash tag."""

    symbol: str
    input: str
    output: str
    snap: str
    epoch: str
    lease: str
    applied: str

    @classmethod
    def of(cls, symbol: str) -> MarketKeys:
        return cls(symbol, in_stream(symbol), out_stream(symbol), snap_key(symbol),
                   epoch_key(symbol), lease_key(symbol), applied_key(symbol))


GROUP = ENGINE_GROUP

# -- the scripts ----------------------------------------------------------------

# KEYS: lease, epoch.  ARGV: me, lease_ms.  -> new epoch, or nil when another holds the lease.
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# KEYS: lease, epoch.  ARGV: me, lease_ms, epoch.  -> 1 renewed, 0 fenced, -1 epoch gone.
RENEW = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then return -1 end
if epoch ~= ARGV[3] then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease, epoch.  ARGV: me, epoch.  -> 1 released, 0 not ours.
RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[2] and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

_CHECK_EPOCH = """
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then
  if not epoch then return redis.error_reply('NOEPOCH epoch key is gone') end
  return redis.error_reply('FENCED epoch is ' .. epoch .. ', not ' .. ARGV[1])
end
"""

# KEYS: in, epoch, out, applied.
# ARGV: epoch, group, consumer, prev_applied, last_applied, events, ids...  -> out entry id or nil
COMMIT = _CHECK_EPOCH + """
local applied = redis.call('GET', KEYS[4]) or '0-0'
if applied ~= ARGV[4] then
  return redis.error_reply('CONFLICT applied is ' .. applied .. ', not ' .. ARGV[4])
end
local owners = redis.call('XPENDING', KEYS[1], ARGV[2])[4]
if owners then
  for _, owner in ipairs(owners) do
    if owner[1] ~= ARGV[3] then
      return redis.error_reply('STOLEN ' .. owner[1] .. ' holds ' .. owner[2] .. ' entries')
    end
  end
end
local out_id = false
if ARGV[6] ~= '' then
  out_id = redis.call('XADD', KEYS[3], '*', '""" + OUT_EVENTS_FIELD.decode() + """', ARGV[6],
                      '""" + OUT_INPUT_FIELD.decode() + """', ARGV[5])
end
redis.call('SET', KEYS[4], ARGV[5])
local n = #ARGV
local i = 7
while i <= n do
  local j = math.min(i + """ + str(_ACK_CHUNK - 1) + """, n)
  redis.call('XACK', KEYS[1], ARGV[2], unpack(ARGV, i, j))
  i = j + 1
end
return out_id
"""

# KEYS: in, epoch, out, snap.  ARGV: epoch, snapshot, in_min_id, out_retention.
# -> {entries trimmed from in, entries trimmed from out}
SNAPSHOT = _CHECK_EPOCH + """
redis.call('SET', KEYS[4], ARGV[2])
local trimmed_in = 0
if ARGV[3] ~= '0-0' then
  trimmed_in = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3])
end
local trimmed_out = redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[4])
return {trimmed_in, trimmed_out}
"""


def call(client: redis.Redis, *args: Any) -> Any:
    """Run one Redis command and return its reply (raw for stream commands, see ``connect``)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class Script:
    """A Lua script run with EVALSHA; loaded again on NOSCRIPT (e.g. after a restart)."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: tuple[str, ...], *args: Any) -> Any:
        """Run the script; one round trip (two after a NOSCRIPT, which executed nothing)."""
        try:
            try:
                return call(client, "EVALSHA", self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                call(client, "SCRIPT", "LOAD", self.source)
                return call(client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise _script_error(exc) from None


def _script_error(exc: redis.ResponseError) -> Exception:
    message = str(exc)
    if isinstance(exc, redis.exceptions.NoScriptError):
        return ScriptMissing(message)
    if "FENCED" in message:
        return Fenced(message)
    if "NOEPOCH" in message or "NOGROUP" in message:
        return StateLost(message)
    if "STOLEN" in message:
        return Stolen(message)
    if "CONFLICT" in message:
        return CommitConflict(message)
    return exc


_ACQUIRE = Script(ACQUIRE)
_RENEW = Script(RENEW)
_RELEASE = Script(RELEASE)
_COMMIT = Script(COMMIT)
_SNAPSHOT = Script(SNAPSHOT)
ALL_SCRIPTS = (_ACQUIRE, _RENEW, _RELEASE, _COMMIT, _SNAPSHOT)


def load_scripts(client: redis.Redis) -> None:
    """SCRIPT LOAD every script once (after connecting), so EVALSHA finds them."""
    for script in ALL_SCRIPTS:
        call(client, "SCRIPT", "LOAD", script.source)


# -- lease and epoch ------------------------------------------------------------


def acquire(client: redis.Redis, keys: MarketKeys, me: str, lease_ms: int) -> int | None:
    """Take the market's lease if free (or already ``me``'s); return the new epoch.

    None means another engine holds it: stay a standby and try again later.
    On success the caller must recover the market before reading anything.
    """
    epoch = _ACQUIRE(client, (keys.lease, keys.epoch), me, lease_ms)
    return None if epoch is None else int(epoch)


def renew(client: redis.Redis, keys: MarketKeys, me: str, lease_ms: int, epoch: int) -> None:
    """Extend the lease; raises :class:`Fenced` or :class:`StateLost` if it is no longer ours."""
    result = _RENEW(client, (keys.lease, keys.epoch), me, lease_ms, epoch)
    if result == -1:
        raise StateLost(f"{keys.epoch} is gone")
    if result != 1:
        raise Fenced(f"lease of {keys.symbol} is held by another engine")


def release(client: redis.Redis, keys: MarketKeys, me: str, epoch: int) -> bool:
    """Drop the lease (clean stop) so a standby takes over without waiting for expiry."""
    return bool(_RELEASE(client, (keys.lease, keys.epoch), me, epoch))


# -- reading and committing -------------------------------------------------------


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
    return _pack("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, *block,
                 "STREAMS", *streams, *(">" for _ in streams))


class CommitChannel:
    """A dedicated connection for the engine's hot path: commits and reads of new entries.

    :meth:`send` writes ``EVALSHA COMMIT`` followed by an ``XREADGROUP`` of
    new entries (when ``read_count`` > 0) without waiting; the caller may
    apply the next batch while Redis works, then calls :meth:`receive`. One
    round trip per batch; when the engine would otherwise go idle, the read
    can BLOCK, so an idle market costs one round trip per command, not two.
    :meth:`read` is a read alone. Commands are packed in C (hiredis) or by
    :func:`resp_command`, and replies read raw: ~20 us less Python per call
    than redis-py's ``execute_command``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._conn: Any = self._pool.get_connection()  # redis-py's Connection is untyped
        self._reading = False

    def send(self, keys: MarketKeys, epoch: int, consumer: str, prev_applied: bytes,
             ids: list[bytes], events: bytes, read_count: int,
             read_streams: Sequence[str], block_ms: int | None = None) -> None:
        """Publish ``events`` (encoded, b"" for none), record ``ids[-1]``, XACK ``ids``.

        Then read up to ``read_count`` new entries of ``read_streams`` (none
        when 0), waiting up to ``block_ms`` for the first if given.
        """
        packed = resp_command((
            "EVALSHA", _COMMIT.sha, 4, keys.input, keys.epoch, keys.output, keys.applied,
            epoch, GROUP, consumer, prev_applied, ids[-1], events), ids)
        if read_count:  # one write (redis-py sends each list item with its own sendall)
            packed += _read_command(consumer, read_count, read_streams, block_ms)
        self._reading = bool(read_count)
        self._conn.send_packed_command([packed])

    def receive(self) -> tuple[bytes | None, float, StreamEntries]:
        """``(out entry id or None, perf_counter() at the commit's reply, entries read)``.

        Raises :class:`Fenced`, :class:`StateLost` or :class:`CommitConflict`
        (nothing committed; entries read meanwhile stay pending, for recovery).
        """
        error: redis.ResponseError | None = None
        out_id: bytes | None = None
        entries: StreamEntries = []
        try:
            out_id = self._conn.read_response()
        except redis.ResponseError as exc:
            error = exc
        committed_at = time.perf_counter()
        if self._reading:
            try:
                entries = self._conn.read_response() or []
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise _script_error(error) from None
        return out_id, committed_at, entries

    def read(self, consumer: str, count: int, streams: Sequence[str], block_ms: int | None
             ) -> StreamEntries:
        """New entries of ``streams`` (up to ``count`` each), waiting up to ``block_ms``."""
        self._conn.send_packed_command([_read_command(consumer, count, streams, block_ms)])
        reply: StreamEntries = self._conn.read_response() or []
        return reply

    def close(self) -> None:
        self._conn.disconnect()
        self._pool.release(self._conn)


def write_snapshot(client: redis.Redis, keys: MarketKeys, epoch: int, snapshot: bytes,
                   last_input_id: bytes, out_retention: int) -> tuple[int, int]:
    """Store ``snapshot`` (taken at ``last_input_id``) and trim both streams behind it.

    ``:in`` keeps every entry from ``last_input_id`` on (XTRIM MINID), so
    nothing the snapshot does not cover is ever removed. Returns the numbers
    of entries trimmed from ``:in`` and ``:out``. One round trip.
    """
    trimmed_in, trimmed_out = _SNAPSHOT(client, (keys.input, keys.epoch, keys.output, keys.snap),
                                        epoch, snapshot, last_input_id, out_retention)
    return int(trimmed_in), int(trimmed_out)


# -- applying entries -------------------------------------------------------------


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """``b"<ms>-<n>"`` as a tuple that orders like stream ids. O(len)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, n = text.partition("-")
    return int(ms), int(n or 0)


_decode_command: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


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
    matching plus ~0.4 us of decoding per entry.
    """
    decode = _decode_command.decode
    apply_into = book.apply_into
    for entry_id, fields in entries:
        input_id = entry_id.decode()
        try:
            if len(fields) == 2 and fields[0] == IN_FIELD:
                cmd = decode(fields[1])
            else:
                cmd = decode(_command_field(fields))
        except (msgspec.DecodeError, ValueError, TypeError):
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
            events += book.reject_input(input_id, errors.INTERNAL)

"""The market engine's server-side Lua scripts, each touching one market's keys.

Every key a script names carries the market's hash tag, so Redis Cluster
runs them unchanged:

- ``ACQUIRE``: take the lease (``SET PX`` when free or already ours) and
  ``INCR`` the fencing epoch. A takeover always gets a new epoch.
- ``RENEW``: compare-and-renew the lease, only while the epoch is still ours.
- ``COMMIT``: check the epoch, the last applied id and that no other
  consumer holds pending entries, then ``XADD`` the batch's events as one
  ``:out`` entry, record the last applied input id and ``XACK`` the batch. A
  script that passes its checks cannot fail halfway: all or nothing.
- ``SNAPSHOT``: write the snapshot, then trim ``:in`` with ``MINID`` to the
  snapshot's last input id (never past it) and ``:out`` by retention.
- ``RELEASE``: drop the lease on a clean stop so a standby takes over at once.
- ``APPEND``: XADD many entries to one stream in one call (the risk stage's
  forwards to a market).

Reads are plain ``XREADGROUP`` (reading inside a script costs ~1 us per entry
of Lua conversion). A paused engine (a zombie) may therefore still take
delivery of entries after another engine took over; they then sit pending
under its name, so the owner's next commit fails with ``Stolen`` before
anything is published, and the owner recovers (claiming them back, in id
order). The zombie's own commits fail on the epoch.

:class:`Script` runs one with ``EVALSHA`` on the connection to the node of
its keys and maps its error replies to the exceptions of
``engine.exceptions`` (:func:`script_error`); ``engine.topology`` loads them
on every primary.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import redis

from contract.streams import OUT_EVENTS_FIELD, OUT_INPUT_FIELD
from engine.exceptions import (
    CommitConflict,
    Fenced,
    ScriptMissing,
    StateLost,
    Stolen,
    TopologyChanged,
)

# Largest number of ids passed to one XACK inside a script (Lua's unpack limit is ~8000).
_ACK_CHUNK = 4000

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


# KEYS: a stream.  ARGV: n, then n entries' flat fields, each entry as its field count
# followed by its fields.  -> n.  Appends many entries in one call: one reply to read, where
# a pipeline of XADDs has one per entry (~3 us each in Python).
APPEND = """
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  local k = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + k))
  i = i + k + 1
end
return n
"""


class Caller(Protocol):
    """A connection to the node of the script's keys (``engine.channel.CommitChannel``)."""

    def call(self, *args: str | int | bytes) -> Any: ...


class Script:
    """A Lua script run with EVALSHA; loaded again on NOSCRIPT (e.g. after a restart)."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, node: Caller, keys: tuple[str, ...], *args: str | int | bytes) -> Any:
        """Run the script on ``node`` (the node of ``keys``); one round trip (two after a
        NOSCRIPT, which executed nothing). Error replies raise ``engine.exceptions``'s."""
        try:
            try:
                return node.call("EVALSHA", self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                node.call("SCRIPT", "LOAD", self.source)
                return node.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise script_error(exc) from None


_MOVED = (redis.exceptions.MovedError, redis.exceptions.AskError,
          redis.exceptions.ReadOnlyError, redis.exceptions.ClusterDownError,
          redis.exceptions.TryAgainError)


def script_error(exc: redis.ResponseError) -> Exception:
    """The ``engine.exceptions`` error an error reply means (the reply itself if none)."""
    message = str(exc)
    if isinstance(exc, redis.exceptions.NoScriptError):
        return ScriptMissing(message)
    if isinstance(exc, _MOVED) or message.startswith(("MOVED", "ASK", "READONLY",
                                                      "CLUSTERDOWN", "TRYAGAIN")):
        return TopologyChanged(message)
    if "FENCED" in message:
        return Fenced(message)
    if "NOEPOCH" in message or "NOGROUP" in message:
        return StateLost(message)
    if "STOLEN" in message:
        return Stolen(message)
    if "CONFLICT" in message:
        return CommitConflict(message)
    return exc


ACQUIRE_SCRIPT = Script(ACQUIRE)
RENEW_SCRIPT = Script(RENEW)
RELEASE_SCRIPT = Script(RELEASE)
COMMIT_SCRIPT = Script(COMMIT)
SNAPSHOT_SCRIPT = Script(SNAPSHOT)
APPEND_SCRIPT = Script(APPEND)
ALL_SCRIPTS = (ACQUIRE_SCRIPT, RENEW_SCRIPT, RELEASE_SCRIPT, COMMIT_SCRIPT, SNAPSHOT_SCRIPT,
               APPEND_SCRIPT)

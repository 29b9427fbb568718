"""A connection's bounded queue of outgoing frames and its slow-consumer policy.

Sans-I/O. The fan-out appends with :meth:`Outbox.push` (never blocks; False
when the queue is full), the connection's writer drains with
:meth:`Outbox.pop`. On overflow the server asks :meth:`Outbox.on_overflow`
what to do:

- ``RESYNC``: the queued pushes are dropped (replies stay), and the caller
  queues fresh snapshots of the connection's book and ticker subscriptions, from
  which the next updates chain;
- ``CLOSE``: the connection is closed with 1008 ``slow consumer``. That is the
  answer when it has trades subscriptions (trades are never dropped silently)
  or when it overflowed already within ``resync_window_s``.
"""

from __future__ import annotations

import enum
from collections import deque

DEFAULT_LIMIT = 1000
DEFAULT_RESYNC_WINDOW_S = 10.0


class Overflow(enum.Enum):
    RESYNC = "resync"
    CLOSE = "close"


class Outbox:
    """Frames waiting to be written to one connection, replies and pushes in order.

    ``limit`` bounds the number of queued frames. All operations are O(1)
    except :meth:`drop_pushes` (O(queued)).
    """

    __slots__ = ("limit", "resync_window_s", "_frames", "last_overflow")

    def __init__(self, limit: int = DEFAULT_LIMIT,
                 resync_window_s: float = DEFAULT_RESYNC_WINDOW_S) -> None:
        self.limit = limit
        self.resync_window_s = resync_window_s
        self._frames: deque[tuple[bytes, bool]] = deque()
        self.last_overflow: float | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> bool:
        """Queue a push; False (nothing queued) when the queue is full."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append((frame, True))
        return True

    def reply(self, frame: bytes) -> bool:
        """Queue a reply; False when the queue is full (the peer does not read)."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append((frame, False))
        return True

    def pop(self) -> bytes | None:
        """Next frame to write, or None when empty."""
        return self._frames.popleft()[0] if self._frames else None

    def drop_pushes(self) -> None:
        """Forget every queued push, keeping the replies in order."""
        self._frames = deque(f for f in self._frames if not f[1])

    def clear(self) -> None:
        self._frames.clear()

    def on_overflow(self, now: float, has_trades: bool) -> Overflow:
        """Decide what a full queue means for this connection (see module docstring)."""
        recent = self.last_overflow is not None and now - self.last_overflow < self.resync_window_s
        self.last_overflow = now
        return Overflow.CLOSE if has_trades or recent else Overflow.RESYNC

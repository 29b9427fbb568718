"""Token buckets for request rate limits; the caller passes the clock (no I/O).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each
admitted request takes one. Cost: O(1) per :meth:`TokenBucket.take`.
"""

from __future__ import annotations


class TokenBucket:
    """``take(now)`` is True (and spends a token) while the rate allows, else False.

    ``now`` is any monotonic clock in seconds (``time.monotonic()``); the
    bucket starts full.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, n: int = 1) -> bool:
        """Spend ``n`` tokens if there are that many; a refused take spends nothing."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

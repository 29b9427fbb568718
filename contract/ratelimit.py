"""Token buckets for request rate limits; the caller passes the clock (no I/O).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each
admitted request takes one. A refused request learns when to retry
(:meth:`TokenBucket.retry_after_ms`). Both websocket services use it: the
gateway per connection and per account, market data per connection. Cost:
O(1) per call.
"""

from __future__ import annotations

import math

from contract.errors import RATE_LIMITED, StreamexError


class TokenBucket:
    """``take(now)`` is True (and spends a token) while the rate allows, else False.

    ``now`` is any monotonic clock in seconds (``time.monotonic()``); the
    bucket starts full.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def take(self, now: float, n: int = 1) -> bool:
        """Spend ``n`` tokens if there are that many; a refused take spends nothing."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def retry_after_ms(self, now: float, n: int = 1) -> int:
        """Milliseconds (rounded up, at least 1) until ``n`` tokens are there; 0 if they are.

        ``n`` above ``burst`` can never be taken: the time to a full bucket is returned.
        """
        self._refill(now)
        missing = min(float(n), self.burst) - self.tokens
        if missing <= 0:
            return 0
        return max(1, math.ceil(missing / self.rate * 1000.0))

    def describe(self, scope: str) -> str:
        """The limit in words, e.g. ``limit 1000/s, burst 2000 per connection``."""
        rate = self.rate
        shown = str(int(rate)) if rate.is_integer() else repr(rate)
        return f"limit {shown}/s, burst {int(self.burst)} per {scope}"


class RateLimited(StreamexError):
    """A ``RATE_LIMITED`` refusal; ``scope`` names the bucket (``connection``, ``account``)."""

    def __init__(self, message: str, scope: str, retry_after_ms: int) -> None:
        super().__init__(RATE_LIMITED, message, retry_after_ms=retry_after_ms)
        self.scope = scope


def rate_limited(bucket: TokenBucket, now: float, scope: str) -> RateLimited:
    """The ``RATE_LIMITED`` refusal of a request ``bucket`` did not admit at ``now``.

    ``scope`` is what the bucket limits (``connection``, ``account``); the
    message states the limit and when to retry, and the error carries
    ``retry_after_ms``, e.g. ``too many requests on this connection (limit
    1000/s, burst 2000 per connection); retry in 0.050 s``.
    """
    retry_ms = bucket.retry_after_ms(now)
    return RateLimited(
        f"too many requests on this {scope} ({bucket.describe(scope)}); "
        f"retry in {retry_ms / 1000:.3f} s",
        scope, retry_ms,
    )

"""The redis-py asyncio client of the asyncio services, built from one Redis URL."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

REDIS_CONNECT_TIMEOUT_S = 2.0


def redis_client(url: str, socket_timeout: float | None = None) -> aioredis.Redis:
    """A RESP2 client, by default without a per-call socket timeout.

    redis-py's ``socket_timeout`` wraps every write in ``wait_for`` (a task)
    and every read in an ``asyncio.timeout``: ~10% of the gateway's CPU under
    load when paid per request. A dead peer is still noticed: connecting times
    out, TCP keepalive is on (for a ``redis://`` URL; a ``unix://`` socket
    reports a dead server at once), an idle connection is PINGed before
    reuse, and the hot paths (``redisio.resp``, ``redisio.tail``) time their
    own round trips.
    """
    tcp: dict[str, Any] = {} if url.startswith("unix:") else {"socket_keepalive": True}
    return aioredis.Redis.from_url(url, protocol=2, socket_timeout=socket_timeout,
                                   socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                                   health_check_interval=30, **tcp)

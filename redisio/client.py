"""The redis-py asyncio clients of the asyncio services: one server, or a Redis Cluster.

For ordinary commands (GET, XINFO, XREVRANGE, pipelines): :func:`redis_client`
is a ``redis.asyncio.Redis`` on one URL; :func:`cluster_client` a
``redis.asyncio.RedisCluster`` on seed URLs, which routes each command by
its key and splits a pipeline into one per node. The hot paths do not use
them (``redisio.resp``, ``redisio.tail``); ``redisio.topology`` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url

REDIS_CONNECT_TIMEOUT_S = 2.0
CLUSTER_SOCKET_TIMEOUT_S = 2.0
"""Per-call socket timeout of the cluster client: a hung node (SIGSTOP, a dropped
network) must not hold up a slot map refresh, which asks the nodes in turn."""

AnyRedis = aioredis.Redis | RedisCluster
"""Either client: both have the ordinary commands and ``pipeline(transaction=False)``."""


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


def seed_kwargs(url: str) -> dict[str, Any]:
    """Connection settings shared by every node of a cluster, from one seed URL.

    Username, password and TLS settings (``ssl`` True for ``rediss://``),
    without host, port or database (a cluster has database 0 only).
    """
    if url.startswith("unix:"):
        raise ValueError(f"{url}: a cluster node is reached over TCP (redis:// or rediss://)")
    kw: dict[str, Any] = dict(parse_url(url))
    connection_class = kw.pop("connection_class", None)
    for name in ("host", "port", "db", "path"):
        kw.pop(name, None)
    kw["ssl"] = connection_class is not None and "ssl" in connection_class.__name__.lower()
    kw["socket_connect_timeout"] = REDIS_CONNECT_TIMEOUT_S
    return kw


def host_port(url: str) -> tuple[str, int]:
    kw = parse_url(url)
    if "path" in kw:
        raise ValueError(f"{url}: a cluster node is reached over TCP (redis:// or rediss://)")
    return str(kw.get("host", "localhost")), int(kw.get("port", 6379))


def cluster_client(seeds: Sequence[str],
                   socket_timeout: float = CLUSTER_SOCKET_TIMEOUT_S) -> RedisCluster:
    """A RESP2 cluster client on ``seeds`` (password, username and TLS from the first).

    Call ``await client.initialize()`` (or any command) to load the slot map.
    Not every slot need be served (``require_full_coverage`` off): the markets
    of the other primaries keep working while one primary is replaced.
    """
    if not seeds:
        raise ValueError("seeds: at least one Redis URL is needed")
    kw = seed_kwargs(seeds[0])
    tls = {k: v for k, v in kw.items() if k.startswith("ssl_")}
    nodes = [ClusterNode(*host_port(url)) for url in seeds]
    return RedisCluster(startup_nodes=nodes, username=kw.get("username"),
                        password=kw.get("password"), ssl=bool(kw["ssl"]), **tls,
                        require_full_coverage=False, protocol=2,
                        socket_timeout=socket_timeout,
                        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S, socket_keepalive=True)

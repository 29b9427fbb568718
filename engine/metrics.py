"""The engine process's Prometheus metrics: market engines and risk engines alike.

Label ``stage`` is the stage's name (a market symbol, or ``acct-K``): a bounded set.

- Observed by the runner once per commit, nothing per command (two
  histogram observes): ``streamex_engine_batch_size{stage}`` (commands per
  commit) and ``streamex_engine_commit_seconds{stage}`` (the send of a commit
  to its reply).
- Read at scrape time by :class:`EngineCollector` from plain attributes the
  runner keeps (:class:`StageStatus`): ``streamex_engine_commands_applied_total``,
  ``streamex_engine_recoveries_total``, ``streamex_engine_clock_entries_total``,
  ``streamex_engine_lease_held`` (1 active, 0 standby), ``streamex_engine_epoch``
  and ``streamex_engine_snapshot_age_seconds`` (both only while the lease is
  held), and ``streamex_engine_reconnects_total`` (no label).
- Lag, from Redis at scrape time on the collector's own connection (the
  runner's are single-threaded and may hold a blocking read), for every
  configured stage, owned or stood by for: ``streamex_engine_lag_entries{stage}``,
  the entries of ``:in`` not yet applied (``XINFO GROUPS``: the group's
  ``lag``, entries never delivered, plus ``pending``, delivered but not yet
  committed), and ``streamex_engine_lag_seconds{stage}``, the age of the
  oldest of them (its id's milliseconds against the wall clock; 0 when none):
  the first pending entry (``XPENDING`` summary), else the first entry after
  the group's last delivered id (``XRANGE ... COUNT 1``). One or two
  pipelined round trips per scrape (one pipeline per node on a cluster). A
  Redis failure leaves the lag series out of that scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.cluster
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisClusterException

from contract.ids import parse_id
from contract.keys import ENGINE_GROUP
from ops.metrics import LATENCY_BUCKETS, SIZE_BUCKETS

log = logging.getLogger("streamex.engine")

STAGE = ("stage",)
SCRAPE_TIMEOUT_S = 2.0
"""Socket timeout of the collector's Redis calls: a scrape never hangs on a dead Redis."""
LAG_SCAN_MAX = 1000
"""When Redis cannot say a group's lag (``nil``), at most this many entries are counted."""


@dataclass(frozen=True, slots=True)
class StageStatus:
    """What the runner knows of one stage at a moment (read from its plain attributes)."""

    name: str
    input_key: str
    applied: int
    """Commands this process applied and committed (replays excluded)."""
    recoveries: int
    clock_entries: int
    """Clock entries this process appended to the stage's input stream."""
    epoch: int | None
    """The fencing epoch while this process holds the lease, else None (standby)."""
    snapshot_age_s: float | None
    """Seconds since the last snapshot this process wrote or loaded (recovery from no
    snapshot counts as loading an empty one); None while standing by or recovering."""


class EngineSource(Protocol):
    """What the collector reads: the runner (``engine.runner.EngineRunner``)."""

    @property
    def reconnects(self) -> int:
        """Times the runner reconnected to Redis after a failure."""

    def stage_status(self) -> list[StageStatus]:
        """Every configured stage, safe to call from another thread."""


@dataclass(frozen=True, slots=True)
class Lag:
    entries: int
    seconds: float


class EngineMetrics:
    """The engine process's metrics on ``registry`` (``ops.metrics.process_registry``).

    ``seeds`` and ``cluster`` say where Redis is, as for the runner; the lag
    collector opens its own client on first scrape. Call :meth:`attach` with
    the runner (``EngineRunner.instrument`` does).
    """

    def __init__(self, registry: CollectorRegistry, seeds: Sequence[str], *,
                 cluster: bool = False) -> None:
        self.registry = registry
        self.batch_size = Histogram(
            "streamex_engine_batch_size", "Commands per commit.", STAGE, registry=registry,
            buckets=SIZE_BUCKETS)
        self.commit_seconds = Histogram(
            "streamex_engine_commit_seconds",
            "Time from sending a commit to its reply (the next batch is applied meanwhile).",
            STAGE, registry=registry, buckets=LATENCY_BUCKETS)
        self.collector = EngineCollector(seeds, cluster=cluster)

    def observers(self, stage: str) -> tuple[Callable[[float], None], Callable[[float], None]]:
        """``(observe batch size, observe commit seconds)`` of ``stage``: bound methods of
        the labelled children, so the hot path does no label lookup."""
        return self.batch_size.labels(stage).observe, self.commit_seconds.labels(stage).observe

    def attach(self, source: EngineSource) -> None:
        """Register the scrape-time collector reading ``source``. Once."""
        self.collector.source = source
        self.registry.register(self.collector)

    def close(self) -> None:
        self.collector.close()


class EngineCollector(Collector):
    """The scrape-time part of :class:`EngineMetrics` (see the module's docstring)."""

    def __init__(self, seeds: Sequence[str], *, cluster: bool = False) -> None:
        self.seeds = tuple(seeds)
        self.cluster = cluster
        self.source: EngineSource | None = None
        self._client: redis.Redis | redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The families without samples: registering the collector does no I/O."""
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        source = self.source
        f = _Families()
        if source is None:
            return f.all()
        stages = source.stage_status()
        for s in stages:
            f.applied.add_metric([s.name], s.applied)
            f.recoveries.add_metric([s.name], s.recoveries)
            f.clock.add_metric([s.name], s.clock_entries)
            f.lease.add_metric([s.name], 0 if s.epoch is None else 1)
            if s.epoch is not None:
                f.epoch.add_metric([s.name], s.epoch)
            if s.snapshot_age_s is not None:
                f.snapshot_age.add_metric([s.name], s.snapshot_age_s)
        f.reconnects.add_metric([], source.reconnects)
        for name, lag in self._lags(stages).items():
            f.lag_entries.add_metric([name], lag.entries)
            f.lag_seconds.add_metric([name], lag.seconds)
        return f.all()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- internals -----------------------------------------------------------------------

    def _redis(self) -> redis.Redis | redis.cluster.RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = _client(self.seeds, self.cluster)
            return self._client

    def _lags(self, stages: Sequence[StageStatus]) -> dict[str, Lag]:
        """Stage name -> its lag; stages whose group does not exist yet are left out, and
        everything when Redis fails. Cost: one or two pipelines."""
        if not stages:
            return {}
        try:
            return lags(self._redis(), [(s.name, s.input_key) for s in stages])
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            log.debug("event=metrics_lag_failed error=%r", str(exc))
            return {}


class _Families:
    """One scrape's metric families (filled by :meth:`EngineCollector.collect`)."""

    def __init__(self) -> None:
        self.applied = CounterMetricFamily(
            "streamex_engine_commands_applied", "Commands applied and committed by this "
            "process (replays excluded).", labels=STAGE)
        self.recoveries = CounterMetricFamily(
            "streamex_engine_recoveries", "Recoveries (lease taken, snapshot loaded, input "
            "replayed) by this process.", labels=STAGE)
        self.clock = CounterMetricFamily(
            "streamex_engine_clock_entries", "Clock entries this process appended to the "
            "stage's input stream.", labels=STAGE)
        self.lease = GaugeMetricFamily(
            "streamex_engine_lease_held", "1 while this process holds the stage's lease "
            "(active), 0 while it stands by.", labels=STAGE)
        self.epoch = GaugeMetricFamily(
            "streamex_engine_epoch", "The fencing epoch of the stage's lease this process "
            "holds.", labels=STAGE)
        self.snapshot_age = GaugeMetricFamily(
            "streamex_engine_snapshot_age_seconds", "Seconds since the last snapshot this "
            "process wrote or loaded (stages it holds only).", labels=STAGE)
        self.reconnects = CounterMetricFamily(
            "streamex_engine_reconnects", "Reconnections to Redis after a failure.")
        self.lag_entries = GaugeMetricFamily(
            "streamex_engine_lag_entries", "Entries of the stage's input stream not yet "
            "applied (never delivered, plus delivered and not committed).", labels=STAGE)
        self.lag_seconds = GaugeMetricFamily(
            "streamex_engine_lag_seconds", "Age of the oldest entry of the stage's input "
            "stream not yet applied (0 when none).", labels=STAGE)

    def all(self) -> list[Metric]:
        return [self.applied, self.recoveries, self.clock, self.lease, self.epoch,
                self.snapshot_age, self.reconnects, self.lag_entries, self.lag_seconds]


def _client(seeds: Sequence[str], cluster: bool) -> redis.Redis | redis.cluster.RedisCluster:
    options: dict[str, Any] = dict(socket_timeout=SCRAPE_TIMEOUT_S,
                                   socket_connect_timeout=SCRAPE_TIMEOUT_S)
    if not cluster:
        return redis.Redis.from_url(seeds[0], **options)
    first = redis.Redis.from_url(seeds[0])
    kw = first.connection_pool.connection_kwargs
    first.close()
    nodes = [redis.cluster.ClusterNode(*_host_port(url))  # type: ignore[no-untyped-call]
             for url in seeds]
    return redis.cluster.RedisCluster(
        startup_nodes=nodes, username=kw.get("username"), password=kw.get("password"),
        require_full_coverage=False, **options)


def _host_port(url: str) -> tuple[str, int]:
    kw = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    return str(kw.get("host", "localhost")), int(kw.get("port", 6379))


def lags(client: redis.Redis | redis.cluster.RedisCluster,
         stages: Sequence[tuple[str, str]]) -> dict[str, Lag]:
    """``(stage name, input stream)`` -> the ``engine`` group's lag on that stream.

    A stream or group that does not exist is left out. Raises Redis errors
    other than those. Cost: a pipeline of ``XINFO GROUPS``, then one of an
    ``XPENDING`` or ``XRANGE COUNT 1`` per stage with something unapplied.
    """
    pipe = client.pipeline(transaction=False)
    for _, key in stages:
        pipe.xinfo_groups(key)
    infos = pipe.execute(raise_on_error=False)
    counts: dict[str, tuple[str, int, int, bytes]] = {}
    for (name, key), info in zip(stages, infos, strict=True):
        if isinstance(info, redis.ResponseError):
            if "no such key" in str(info).lower():
                continue
            raise info
        if isinstance(info, Exception):
            raise info
        group = next((g for g in info if _text(g.get("name")) == ENGINE_GROUP), None)
        if group is None:
            continue
        pending = int(group.get("pending") or 0)
        last = group.get("last-delivered-id") or b"0-0"
        last = last if isinstance(last, bytes) else str(last).encode()
        raw_lag = group.get("lag")
        undelivered = -1 if raw_lag is None else int(raw_lag)
        counts[name] = (key, pending, undelivered, last)
    todo = [(name, c) for name, c in counts.items() if c[1] or c[2]]
    oldest: dict[str, bytes | None] = {}
    if todo:
        pipe = client.pipeline(transaction=False)
        for _, (key, pending, undelivered, last) in todo:
            if pending:
                pipe.xpending(key, ENGINE_GROUP)
            else:
                count = 1 if undelivered > 0 else LAG_SCAN_MAX
                pipe.xrange(key, min=b"(" + last, max="+", count=count)
        for (name, (_, pending, undelivered, _)), reply in zip(
                todo, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                raise reply
            if pending:
                oldest[name] = reply.get("min")
            else:
                oldest[name] = reply[0][0] if reply else None
                if undelivered < 0:  # Redis could not say: count (a lower bound)
                    counts[name] = (counts[name][0], 0, len(reply), counts[name][3])
    now_ms = time.time() * 1000
    result: dict[str, Lag] = {}
    for name, (_, pending, undelivered, _) in counts.items():
        first = oldest.get(name)
        age = 0.0 if first is None else max(0.0, (now_ms - parse_id(first)[0]) / 1000)
        result[name] = Lag(pending + max(0, undelivered), age)
    return result


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["EngineCollector", "EngineMetrics", "EngineSource", "Lag", "StageStatus", "lags"]

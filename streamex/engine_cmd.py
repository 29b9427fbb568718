"""``streamex engine``: run the matching engine for some markets against a Redis server.

Usage: ``streamex engine --config FILE [--markets A,B] [--consumer NAME]
[--redis-url URL] [--metrics-host HOST] [--metrics-port PORT]``. The Redis
URL comes from ``--redis-url``, else the config's ``[redis] url``; the
engine never starts a server itself. Start a second process for the same
markets to get a hot standby. Logs are logfmt lines on stderr
(``streamex.logs``); counters every ``--stats-interval`` s.

Operations: with a metrics port (``--metrics-port``, else ``[engine]
metrics_port``; 0 takes any free port) and ``[metrics] enabled``, it serves
``/metrics``, ``/healthz`` and ``/readyz`` there (``engine.metrics``,
``ops.http``) and logs ``event=metrics service=engine
url=http://HOST:PORT/metrics`` once it listens. It registers itself in Redis
as service ``engine`` (``ops.registry``: its stages, those it holds, its
metrics URL) while it runs.

Exit codes: 0 after SIGTERM/SIGINT (snapshot written), 1 on a fatal error, 2
on bad arguments or configuration or a metrics port that cannot be bound, 3
when another engine took the market over (this one was fenced).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import types
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from contract.settings import Config
from engine.metrics import EngineMetrics
from engine.runner import EngineRunner
from ops.health import Health
from ops.http import MetricsServer, metrics_url
from ops.metrics import process_registry
from ops.registry import new_registration
from streamex.config import ConfigError, service_config
from streamex.gc_tuning import tune_gc
from streamex.logs import add_log_level, setup_logging
from streamex.service_cmd import log_metrics

EXIT_USAGE = 2


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a port number 0..65535 "
                                         "(0: any free port)")
    return port


def add_metrics_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """``--metrics-host`` and ``--metrics-port``, overriding ``[section]``'s."""
    parser.add_argument("--metrics-host", default=None, metavar="HOST",
                        help=f"where to serve /metrics, /healthz, /readyz (default: the "
                             f"config's [{section}] metrics_host)")
    parser.add_argument("--metrics-port", default=None, type=_port, metavar="PORT",
                        help=f"their port, 0 for any free one (default: the config's "
                             f"[{section}] metrics_port; none: no listener)")


class Ops:
    """A service's metrics registry, health checks and listener (bound, not yet serving)."""

    def __init__(self, service: str, host: str, port: int) -> None:
        self.service = service
        self.registry: CollectorRegistry = process_registry()
        self.health = Health(service)
        self.server = MetricsServer(self.registry, self.health, host, port)  # OSError

    @property
    def url(self) -> str:
        return metrics_url(self.server.host, self.server.port)

    def start(self) -> str:
        """Serve (from a daemon thread) and log ``event=metrics``; returns the URL."""
        self.server.start()
        url = self.url
        log_metrics(self.service, url)
        return url

    def close(self) -> None:
        self.server.close()


def open_ops(prog: str, service: str, args: argparse.Namespace, config: Config,
             host: str, port: int | None) -> Ops | None | int:
    """The service's :class:`Ops` when it has a metrics port (``--metrics-port`` over
    ``port``, ``--metrics-host`` over ``host``) and ``[metrics] enabled``; None when not;
    :data:`EXIT_USAGE` (after saying why on stderr) when the port cannot be bound."""
    if args.metrics_port is not None:
        port = args.metrics_port
    host = args.metrics_host or host
    if port is None or not config.metrics.enabled:
        return None
    try:
        return Ops(service, host, port)
    except OSError as exc:
        print(f"{prog}: metrics: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_USAGE


def serve_engine(service: str, runner: EngineRunner, ops: Ops | None, seeds: Sequence[str],
                 cluster: bool) -> int:
    """Run ``runner`` with its metrics and health on ``ops`` (if any) and its registration
    as ``service``; returns its exit code. Closes ``ops``."""
    metrics = None
    url = None
    try:
        if ops is not None:
            metrics = EngineMetrics(ops.registry, seeds, cluster=cluster)
            runner.instrument(metrics)
            ops.health.add_check("redis", runner.redis_problem)
            ops.health.add_check("stages", runner.stages_problem)
            url = ops.start()
        runner.registration = new_registration(
            service, runner.consumer, stages=runner.stage_names(),
            urls={"metrics": url} if url else {})
        return runner.run()
    finally:
        if ops is not None:
            ops.close()
        if metrics is not None:
            metrics.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--markets", default=None,
                        help="comma-separated symbols to serve (default: every configured market)")
    parser.add_argument("--consumer", default=None,
                        help="this engine's name in the lease and consumer group "
                             "(default: HOST-PID); reuse it on restart to take over at once")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                        help="how often to log counters (default: %(default)s)")
    add_metrics_arguments(parser, "engine")
    add_log_level(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex engine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.markets:
        symbols = [s.strip() for s in args.markets.split(",") if s.strip()]
        unknown = [s for s in symbols if s not in config.markets_by_symbol]
        if unknown or not symbols:
            print(f"streamex engine: --markets: not configured: {', '.join(unknown) or '(none)'}"
                  f" (configured: {', '.join(config.markets_by_symbol)})", file=sys.stderr)
            return EXIT_USAGE
        markets = [config.market(s) for s in dict.fromkeys(symbols)]
    else:
        markets = list(config.markets)
    if args.stats_interval <= 0:
        print("streamex engine: --stats-interval: must be positive", file=sys.stderr)
        return EXIT_USAGE
    ops = open_ops("streamex engine", "engine", args, config, config.engine.metrics_host,
                   config.engine.metrics_port)
    if isinstance(ops, int):
        return ops
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    seeds = (url, *(u for u in config.redis.urls if u != url))
    runner = EngineRunner(seeds, markets, config.engine, consumer,
                          stats_interval_s=args.stats_interval, cluster=config.redis.cluster)

    def stop(signum: int, frame: types.FrameType | None) -> None:
        runner.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tune_gc()
    return serve_engine("engine", runner, ops, seeds, config.redis.cluster)

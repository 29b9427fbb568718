"""``streamex up``: the whole exchange in one command.

Starts an embedded Redis (unless ``--redis-url``), one engine process per
market (and per risk shard), the gateway, the market-data service, the
history writer (SQLite in the data directory unless ``[history] url``) and
the REST API; prints the endpoints (and two
demo accounts when the configuration has none); restarts a child that dies;
stops everything on Ctrl-C or SIGTERM (engines snapshot first), and forces on
a second one. With ``--data-dir`` the server keeps an AOF there, so the book
survives a restart of ``streamex up``.

Metrics (``[metrics] enabled``): the engines, risk engines and history get a
metrics port each (``--metrics-port``): the ``metrics_port`` of ``[engine]``,
``[risk]``, ``[history]`` and the ports after it, one per process, or free
ports picked at start (kept across a child's restarts); the gateway, market
data and the REST API serve ``/metrics`` on their own ports. The banner
lists every ``/metrics`` URL and comes once every service's ``/readyz``
answers 200 (at most :data:`READY_TIMEOUT_S`; the services not ready by then
are named on stderr).

Secrets (account secrets, the Redis password) never reach a command line or
a file that outlives the exchange: the children read their configuration
from an anonymous in-memory file (``memfd``) they inherit as
``--config /dev/fd/N``; the embedded Redis gets its password on stdin. Only
``--data-dir`` keeps anything on disk, owner-only: the Redis data and its
password, and the generated demo accounts (``demo-accounts.toml``, 0600).
Every child dies with ``streamex up`` (``PR_SET_PDEATHSIG``), also when it
is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from msgspec.structs import replace

import matching
from contract.keys import in_stream
from contract.settings import Account, Config
from streamex.config import (
    ConfigError,
    display_url,
    dump_config,
    load_config,
)
from streamex.logs import LOG_LEVELS
from streamex.redis_cluster import LocalCluster
from streamex.redis_server import PASSWORD_NAME, RedisServer, die_with_parent, free_port

GRACE_S = 15.0
MAX_BACKOFF_S = 10.0
READY_TIMEOUT_S = 30.0
DEMO_ACCOUNTS = "demo-accounts.toml"
HISTORY_DB = "history.sqlite3"
"""The embedded history database's file, in the data directory (or a temporary one)."""
DEMO_MAKER_TAKER = ("demo-maker", "demo-taker")
"""The accounts of ``--demo``'s market maker: its own, so the user's accounts stay quiet."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config",
                        help="TOML configuration file, - for stdin (default: built-in markets)")
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded server")
    parser.add_argument("--data-dir", help="keep the embedded server's data (AOF) here")
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"),
                        default="everysec", help="AOF fsync policy with --data-dir")
    parser.add_argument("--gateway-port", type=int, help="override [gateway] port")
    parser.add_argument("--marketdata-port", type=int, help="override [marketdata] port")
    parser.add_argument("--api-port", type=int, help="override [api] port")
    parser.add_argument("--cluster", type=int, metavar="N",
                        help="start an embedded Redis Cluster of N primaries and N replicas "
                             "instead of one server")
    parser.add_argument("--durability", choices=("async", "replicated"),
                        help="override [redis] durability (replicated: a cluster only)")
    parser.add_argument("--demo", action="store_true",
                        help="also run a small seeded market maker (streamex demo) on accounts "
                             "of its own, so the book is live and trades print")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                        help="log level of every service (default: %(default)s)")


@dataclass(frozen=True)
class Probe:
    """Where a child answers ``/readyz`` and ``/metrics``: ``base`` is ``http://HOST:PORT``."""

    name: str
    base: str
    metrics: bool


@dataclass
class Child:
    """One supervised process; restarted with backoff when it dies unexpectedly."""

    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)
    probe: Probe | None = None
    """Its /readyz (and /metrics when metrics are on)."""

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only ``streamex up``, which then
        # stops the children in order; PDEATHSIG covers ``up`` itself being killed.
        self.proc = subprocess.Popen(self.argv, preexec_fn=die_with_parent,
                                     start_new_session=True, pass_fds=self.pass_fds)
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


class SecretConfig:
    """The children's configuration, secrets included, readable only by them.

    On Linux an anonymous memory file (``memfd_create``): no name on any file
    system, gone when the last process holding it exits, whatever the exit.
    Elsewhere a 0600 file in a 0700 temporary directory, removed by
    :meth:`close` (a SIGKILL leaves it behind there).
    """

    def __init__(self, text: str) -> None:
        data = text.encode()
        self._dir: Path | None = None
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("streamex-config", 0)  # inheritable by the children
            os.write(self.fd, data)
            self.path = f"/dev/fd/{self.fd}"
            self.pass_fds: tuple[int, ...] = (self.fd,)
        else:  # pragma: no cover - not Linux
            self._dir = Path(tempfile.mkdtemp(prefix="streamex-config-"))
            path = self._dir / "config.toml"
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(self.fd, data)
            self.path = str(path)
            self.pass_fds = ()

    def close(self) -> None:
        os.close(self.fd)
        if self._dir is not None:  # pragma: no cover - not Linux
            with contextlib.suppress(OSError):
                Path(self.path).unlink()
                self._dir.rmdir()


def demo_balances(config: Config) -> dict[str, str]:
    """What a demo account starts with: 1,000,000 of each quote asset, 1,000 of each base."""
    funds = {m.base: "1000" for m in config.markets}
    funds.update({m.quote: "1000000" for m in config.markets})
    return funds


def _demo_accounts(config: Config) -> tuple[Account, ...]:
    return tuple(
        Account(id=f"demo{i}", api_key=f"demo{i}-{secrets.token_hex(8)}",
                secret=secrets.token_hex(24), balances=demo_balances(config))
        for i in (1, 2)
    )


def _effective_config(config: Config, args: argparse.Namespace,
                      data_dir: Path | None) -> tuple[Config, bool]:
    """The configuration the children run with, and whether demo accounts were made.

    Generated demo accounts are kept in ``data_dir`` (0600) when there is one,
    else only in memory.
    """
    if args.gateway_port:
        config = replace(config, gateway=replace(config.gateway, port=args.gateway_port))
    if args.marketdata_port:
        config = replace(config, marketdata=replace(config.marketdata, port=args.marketdata_port))
    if args.api_port:
        config = replace(config, api=replace(config.api, port=args.api_port))
    if args.demo:
        # The market maker's own accounts: new keys each run (only its process logs on
        # with them), the same ids, so it takes its resting orders back after a restart.
        have = {a.id for a in config.accounts}
        extra = tuple(Account(id=name, api_key=f"{name}-{secrets.token_hex(8)}",
                              secret=secrets.token_hex(24), balances=demo_balances(config))
                      for name in DEMO_MAKER_TAKER if name not in have)
        config = replace(config, accounts=config.accounts + extra)
    if any(a.id not in DEMO_MAKER_TAKER for a in config.accounts):
        return config, False
    saved = None if data_dir is None else data_dir / DEMO_ACCOUNTS
    if saved is not None and saved.exists():
        accounts = load_config(saved).accounts
    else:
        accounts = _demo_accounts(config)
        if saved is not None:
            fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(dump_config(Config(accounts=accounts)))
    return replace(config, accounts=accounts + config.accounts), True


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (an IPv6 host: on IPv6)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    """A port free on ``host`` now (on loopback when ``host`` cannot be bound here)."""
    try:
        return free_port(host)
    except OSError:
        return free_port()


def _reach(host: str) -> str:
    """``host`` as a URL's host to connect to: a wildcard bind is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _readyz(base: str) -> tuple[int, str]:
    """``GET base/readyz``: (status, its body on one line); (0, why) if no answer."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace").strip().replace("\n", "; ")
    except OSError as exc:
        return 0, str(getattr(exc, "reason", exc))


def _wait_ready(children: Sequence[Child], deadline: float) -> list[str]:
    """Poll every probed child's ``/readyz`` (every 100 ms) until each answers 200, its
    process exits, or ``deadline``; returns ``"<name>: <why>"`` for those that are not
    ready."""
    waiting = {c.probe.name: (c, c.probe) for c in children if c.probe is not None}
    why: dict[str, str] = {}
    failed: list[str] = []
    while waiting:
        for name, (child, probe) in list(waiting.items()):
            code = child.exited()
            if code is not None:
                failed.append(f"{name}: exited with code {code}")
                del waiting[name]
                continue
            status, body = _readyz(probe.base)
            if status == 200:
                del waiting[name]
            else:
                why[name] = f"{status} {body}" if status else f"no answer ({body})"
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return failed + [f"{name}: {why.get(name, 'no answer')} ({probe.base}/readyz)"
                     for name, (_, probe) in waiting.items()]


def _private_dir(path: Path) -> Path:
    """``path`` created if needed, owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def run(args: argparse.Namespace) -> int:
    data_dir = None if args.data_dir is None else Path(args.data_dir)
    try:
        config = load_config(args.config)  # checked before anything is created
    except ConfigError as exc:
        print(f"streamex up: {exc}", file=sys.stderr)
        return 2
    gateway, marketdata, api = config.gateway, config.marketdata, config.api
    for name, host, port in (("gateway", gateway.host, args.gateway_port or gateway.port),
                             ("marketdata", marketdata.host,
                              args.marketdata_port or marketdata.port),
                             ("api", api.host, args.api_port or api.port)):
        if not _port_free(host, port):
            print(f"streamex up: {name} port {host}:{port} is in use "
                  f"(another streamex up?); choose another with --{name}-port",
                  file=sys.stderr)
            return 2
    reserved = {args.gateway_port or gateway.port: "gateway",
                args.marketdata_port or marketdata.port: "market data",
                args.api_port or api.port: "rest api"}
    ports = _plan_metrics(config, reserved) if config.metrics.enabled else None
    if isinstance(ports, str):
        print(f"streamex up: {ports}", file=sys.stderr)
        return 2
    if args.cluster is not None and not 1 <= args.cluster <= 16:
        print("streamex up: --cluster: must be in 1..16", file=sys.stderr)
        return 2
    if args.cluster is not None and (args.redis_url or config.redis.seeds):
        print("streamex up: --cluster starts an embedded cluster: it takes no Redis URL",
              file=sys.stderr)
        return 2
    durability = args.durability or config.redis.durability
    if durability == "replicated" and args.cluster is None and not config.redis.cluster:
        print("streamex up: durability replicated needs a cluster (--cluster N)",
              file=sys.stderr)
        return 2
    if data_dir is not None:
        _private_dir(data_dir)
    try:
        config, generated = _effective_config(config, args, data_dir)
    except ConfigError as exc:
        print(f"streamex up: {exc}", file=sys.stderr)
        return 2

    server: RedisServer | None = None
    cluster: LocalCluster | None = None
    redis_url = args.redis_url or config.redis.url
    secret_config: SecretConfig | None = None
    scratch: tempfile.TemporaryDirectory[str] | None = None
    children: list[Child] = []
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if len(stopping) > 1:
            print("streamex up: forced stop", file=sys.stderr, flush=True)
            for c in children:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.kill()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        if args.cluster is not None:
            cluster = LocalCluster(
                primaries=args.cluster,
                data_dir=None if data_dir is None else _private_dir(data_dir / "redis"),
                aof=data_dir is not None, appendfsync=args.appendfsync, die_with_parent=True)
            cluster.start()
            redis_url = cluster.url
            config = replace(config, redis=replace(
                config.redis, url=redis_url, urls=tuple(cluster.urls[1:]), cluster=True))
        elif redis_url is None and not config.redis.seeds:
            server = RedisServer(
                data_dir=None if data_dir is None else _private_dir(data_dir / "redis"),
                aof=data_dir is not None, appendfsync=args.appendfsync, die_with_parent=True)
            server.start()
            # The services reach the embedded server by its unix socket (cheaper than
            # loopback TCP); the banner shows both.
            redis_url = server.unix_url or server.url
        config = replace(config, redis=replace(config.redis, url=redis_url,
                                               durability=durability))
        if config.history.url is None:  # embedded: SQLite beside the Redis data
            if data_dir is not None:
                where = data_dir
            else:
                scratch = tempfile.TemporaryDirectory(prefix="streamex-history-")
                where = Path(scratch.name)
            config = replace(config, history=replace(
                config.history, url=f"sqlite:///{where.resolve() / HISTORY_DB}"))
        secret_config = SecretConfig(dump_config(config))
        children = _children(config, secret_config, args, ports)
        for c in children:
            c.start()
        # The banner waits (READY_TIMEOUT_S at most) for every service's /readyz: Redis
        # reached, recovered, caught up.
        not_ready = _wait_ready(children, time.monotonic() + READY_TIMEOUT_S)
        if not_ready:
            print(f"streamex up: not ready after {READY_TIMEOUT_S:.0f} s: "
                  + "; ".join(not_ready), file=sys.stderr, flush=True)
        ready = not not_ready and all(c.exited() is None for c in children)
        _print_banner(config, redis_url or "", server, data_dir, generated, ready,
                      any(c.name == "demo" for c in children), cluster,
                      [c.probe for c in children if c.probe is not None and c.probe.metrics])
        _supervise(children, stopping)
    finally:
        code = _stop_all(children, force=len(stopping) > 1)
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()
        if secret_config is not None:
            secret_config.close()
        if scratch is not None:
            scratch.cleanup()
    return code


@dataclass(frozen=True)
class MetricsPorts:
    """The metrics ports of the processes that have no port of their own: one per market's
    engine, one per risk shard's engine, and history's."""

    engines: tuple[int, ...]
    risk: tuple[int, ...]
    history: int


def _plan_metrics(config: Config, reserved: dict[int, str]) -> MetricsPorts | str:
    """Each section's ``metrics_port`` and the ports after it, one per process (engines:
    one per market; risk: one per shard), or free ports picked now when it is unset or 0
    (picked once, so a restarted child keeps its port). A message instead when a
    configured port is in use or two processes would share one (``reserved``: the other
    services' ports, port -> name). O(processes)."""
    taken = dict(reserved)

    def pick(section: str, host: str, first: int | None, names: list[str]
             ) -> list[int] | str:
        got: list[int] = []
        for i, name in enumerate(names):
            if first:
                port = first + i
                where = (f"[{section}] metrics_port = {first}" if len(names) == 1 else
                         f"[{section}] metrics_port = {first}, one port per process from there")
                if port > 65535:
                    return f"{name}: metrics port {port} is beyond 65535 ({where})"
                if port in taken:
                    return (f"{name} and {taken[port]} would share port {port} ({where}); "
                            f"choose other ports")
                if not _port_free(host, port):
                    return (f"{name}: metrics port {host}:{port} is in use ({where}); choose "
                            f"another, or leave it unset for free ports")
            else:
                port = _free_port(host)
                while port in taken:
                    port = _free_port(host)
            taken[port] = name
            got.append(port)
        return got

    e, r, h = config.engine, config.risk, config.history
    engines = pick("engine", e.metrics_host, e.metrics_port,
                   [f"engine {m.symbol}" for m in config.markets])
    if isinstance(engines, str):
        return engines
    risk = pick("risk", r.metrics_host, r.metrics_port,
                [f"risk engine acct-{k}" for k in range(r.shards)] if r.enabled else [])
    if isinstance(risk, str):
        return risk
    history = pick("history", h.metrics_host, h.metrics_port, ["history"])
    if isinstance(history, str):
        return history
    return MetricsPorts(tuple(engines), tuple(risk), history[0])


def _metrics_args(host: str, port: int) -> tuple[list[str], str]:
    """The child's ``--metrics-host/--metrics-port`` and the base URL to reach it."""
    return ["--metrics-host", host, "--metrics-port", str(port)], f"http://{_reach(host)}:{port}"


def _children(config: Config, secret_config: SecretConfig, args: argparse.Namespace,
              ports: MetricsPorts | None) -> list[Child]:
    """Every process to start; ``ports`` None: metrics off (``[metrics] enabled = false``),
    only the gateway, market data and the REST API are probed (their ``/readyz``)."""
    base = [sys.executable, "-m", "streamex"]
    common = ["--config", secret_config.path, "--log-level", args.log_level]
    fds = secret_config.pass_fds
    e, r, h = config.engine, config.risk, config.history

    def metrics(name: str, host: str, port: int | None) -> tuple[list[str], Probe | None]:
        if port is None:
            return [], None
        extra, url = _metrics_args(host, port)
        return extra, Probe(name, url, True)

    engines = []
    for i, m in enumerate(config.markets):
        extra, probe = metrics(f"engine {m.symbol}", e.metrics_host,
                               None if ports is None else ports.engines[i])
        engines.append(Child(f"engine {m.symbol}",
                             [*base, "engine", *common, "--markets", m.symbol,
                              "--consumer", f"engine-{m.symbol}", *extra], fds, probe=probe))
    if r.enabled:
        for k in range(r.shards):
            extra, probe = metrics(f"risk engine acct-{k}", r.metrics_host,
                                   None if ports is None else ports.risk[k])
            engines.append(Child(f"engine risk-{k}",
                                 [*base, "risk", *common, "--shards", str(k),
                                  "--consumer", f"risk-{k}", *extra], fds, probe=probe))
    history_extra, history_probe = metrics("history", h.metrics_host,
                                           None if ports is None else ports.history)
    on = ports is not None
    g, md, api = config.gateway, config.marketdata, config.api
    services = [Child("gateway", [*base, "gateway", *common], fds,
                      probe=Probe("gateway", f"http://{_reach(g.host)}:{g.port}", on)),
                Child("marketdata", [*base, "marketdata", *common], fds,
                      probe=Probe("market data", f"http://{_reach(md.host)}:{md.port}", on)),
                Child("history", [*base, "history", *common, *history_extra], fds,
                      probe=history_probe),
                Child("api", [*base, "api", *common], fds,
                      probe=Probe("rest api", f"http://{_reach(api.host)}:{api.port}", on))]
    demo = []
    if args.demo:
        maker, taker = DEMO_MAKER_TAKER
        demo = [Child("demo", [*base, "demo", *common, "--maker", maker, "--taker", taker],
                      fds)]
    return engines + services + demo


def _print_banner(config: Config, redis_url: str, embedded: RedisServer | None,
                  data_dir: Path | None, generated: bool, ready: bool, demo: bool,
                  cluster: LocalCluster | None = None, metrics: Sequence[Probe] = ()
                  ) -> None:
    g, md = config.gateway, config.marketdata
    lines = [
        "streamex is up" if ready else
        "streamex: not every service is ready (see above); they keep trying",
        f"  order entry   ws://{g.host}:{g.port}/",
        f"  market data   ws://{md.host}:{md.port}/",
        f"  web page      http://{md.host}:{md.port}/",
        f"  rest api      http://{config.api.host}:{config.api.port}/api/v3/ "
        "(Binance spot compatible)",
        f"  history       {display_url(config.history.url or '')} (streamex history)",
    ]
    where = f"data in {data_dir}" if data_dir is not None else "in memory"
    if cluster is not None:
        lines.append(f"  redis         cluster of {cluster.primaries} primaries + "
                     f"{cluster.primaries * cluster.replicas} replicas, seed "
                     f"{cluster.display_url} (embedded, {where}; durability "
                     f"{config.redis.durability}; password required)")
        auth = (f'"$(cat {data_dir / "redis" / PASSWORD_NAME})"' if data_dir is not None
                else cluster.password)
        lines.append(f"  redis-cli     REDISCLI_AUTH={auth} redis-cli -c -p "
                     f"{cluster.nodes[0].port}")
    elif embedded is None:
        lines.append(f"  redis         {display_url(redis_url)}")
    else:
        lines.append(f"  redis         {display_url(redis_url)} (embedded, {where}; also "
                     f"{embedded.display_url}; password required)")
        socket_path = embedded.socket_path
        target = f"-s {socket_path}" if socket_path is not None else f"-p {embedded.port}"
        auth = (f'"$(cat {embedded.data_dir / PASSWORD_NAME})"' if data_dir is not None
                else embedded.password)
        lines.append(f"  redis-cli     REDISCLI_AUTH={auth} redis-cli {target}")
    if cluster is not None:  # which primary holds each market (its hash tag's slot)
        placed = [f"{m.symbol} on :{cluster.node_of(in_stream(m.symbol)).port}"
                  for m in config.markets]
        lines.append(f"  markets       {', '.join(placed)}")
    else:
        lines.append(f"  markets       {', '.join(m.symbol for m in config.markets)}")
    lines.append("  matching core " + ("compiled (mypyc)" if matching.COMPILED else
                                       "pure Python (installed without a C compiler, "
                                       "STREAMEX_PURE=1, or book.py edited since)"))
    risk = config.risk
    if risk.enabled:
        engines = "1 risk engine" if risk.shards == 1 else f"{risk.shards} risk engines"
        lines.append(f"  balances      on: {engines}, fees to account {risk.fee_account!r} "
                     "(streamex admin balances)")
    else:
        lines.append("  balances      off ([risk] enabled = false): no holds, no fees")
    if generated:
        kept = f"kept in {data_dir / DEMO_ACCOUNTS}" if data_dir is not None else "not saved"
        lines.append(f"  demo accounts (generated, {kept}; set [[accounts]] in a config "
                     "to choose):")
        for a in config.accounts:
            if a.id not in DEMO_MAKER_TAKER:
                funds = (" funded " + ", ".join(f"{v} {k}" for k, v in a.balances.items())
                         if risk.enabled and a.balances else "")
                lines.append(f"    {a.id}: api_key={a.api_key} secret={a.secret}{funds}")
    if demo:
        lines.append(f"  market maker  streamex demo, on its own accounts "
                     f"{' and '.join(DEMO_MAKER_TAKER)}")
    if metrics:
        width = max(len(p.name) for p in metrics)
        lines.append("  metrics       Prometheus, /healthz and /readyz beside each "
                     "(streamex status for the whole deployment):")
        lines += [f"    {p.name.ljust(width)}  {p.base}/metrics" for p in metrics]
    else:
        lines.append("  metrics       off ([metrics] enabled = false)")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _supervise(children: list[Child], stopping: list[int]) -> None:
    """Restart children that die, with backoff, until a stop signal. Polls every 100 ms."""
    while not stopping:
        now = time.monotonic()
        for c in children:
            code = c.exited()
            if c.proc is None:
                if now >= c.next_start:
                    c.start()
                continue
            if code is None:
                if now - c.started_at > 30:
                    c.restarts = 0  # it has been healthy for a while
                continue
            backoff = min(MAX_BACKOFF_S, 0.5 * 2**c.restarts)
            c.restarts += 1
            print(f"streamex up: {c.name} exited with code {code}; restarting in {backoff:.1f} s",
                  file=sys.stderr, flush=True)
            c.proc = None
            c.next_start = now + backoff
        time.sleep(0.1)


def _stop_all(children: list[Child], force: bool) -> int:
    """SIGTERM the market maker (it cancels its orders), the services, then the engines
    (they snapshot); SIGKILL what lingers."""
    code = 0
    engines = [c for c in children if c.name.startswith("engine")]
    clients = [c for c in children if c.name == "demo"]
    services = [c for c in children if c not in engines and c not in clients]
    for group in (clients, services, engines):
        for c in group:
            if c.proc is not None and c.proc.poll() is None:
                if force:
                    c.proc.kill()
                else:
                    c.proc.terminate()
        deadline = time.monotonic() + GRACE_S
        for c in group:
            if c.proc is None:
                continue
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"streamex up: {c.name} did not stop in {GRACE_S:.0f} s; killing",
                      file=sys.stderr, flush=True)
                c.proc.kill()
                c.proc.wait()
                code = 1
            if c.proc.returncode != 0 and not force:
                print(f"streamex up: {c.name} exited with code {c.proc.returncode}",
                      file=sys.stderr, flush=True)
                code = 1
    return code


"""``streamex up``: the whole exchange in one command.

Starts an embedded Redis (unless ``--redis-url``), one engine process per
market, the gateway and the market-data service; prints the endpoints (and two
demo accounts when the configuration has none); restarts a child that dies;
stops everything on Ctrl-C or SIGTERM (engines snapshot first), and forces on
a second one. With ``--data-dir`` the server keeps an AOF there, so the book
survives a restart of ``streamex up``.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from msgspec.structs import replace

from contract.settings import Account, Config
from streamex.config import ConfigError, dump_config, load_config, parse_config
from streamex.redis_server import RedisServer, die_with_parent

GRACE_S = 15.0
MAX_BACKOFF_S = 10.0
READY_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file (default: built-in markets)")
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded server")
    parser.add_argument("--data-dir", help="keep the embedded server's data (AOF) here")
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"),
                        default="everysec", help="AOF fsync policy with --data-dir")
    parser.add_argument("--gateway-port", type=int, help="override [gateway] port")
    parser.add_argument("--marketdata-port", type=int, help="override [marketdata] port")


@dataclass
class Child:
    """One supervised process; restarted with backoff when it dies unexpectedly."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only ``streamex up``, which then
        # stops the children in order; PDEATHSIG covers ``up`` itself being killed.
        self.proc = subprocess.Popen(self.argv, preexec_fn=die_with_parent,
                                     start_new_session=True)
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def _demo_accounts() -> tuple[Account, ...]:
    return tuple(
        Account(id=f"demo{i}", api_key=f"demo{i}-{secrets.token_hex(8)}",
                secret=secrets.token_hex(24))
        for i in (1, 2)
    )


def _effective_config(args: argparse.Namespace, data_dir: Path) -> tuple[Config, bool]:
    """The configuration the children run with, and whether demo accounts were made."""
    config = load_config(args.config)
    if args.gateway_port:
        config = replace(config, gateway=replace(config.gateway, port=args.gateway_port))
    if args.marketdata_port:
        config = replace(config, marketdata=replace(config.marketdata, port=args.marketdata_port))
    generated = False
    if not config.accounts:
        saved = data_dir / "demo-accounts.toml"
        if saved.exists():
            with saved.open("rb") as f:
                accounts = parse_config(tomllib.load(f)).accounts
        else:
            accounts = _demo_accounts()
            saved.write_text(dump_config(Config(accounts=accounts)))
            saved.chmod(0o600)
        config = replace(config, accounts=accounts)
        generated = True
    return config, generated


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_listening(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def run(args: argparse.Namespace) -> int:
    keep_dir = args.data_dir is not None
    data_dir = Path(args.data_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="streamex-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        config, generated = _effective_config(args, data_dir)
    except ConfigError as exc:
        print(f"streamex up: {exc}", file=sys.stderr)
        return 2
    for name, listener in (("gateway", config.gateway), ("marketdata", config.marketdata)):
        if not _port_free(listener.host, listener.port):
            print(f"streamex up: {name} port {listener.host}:{listener.port} is in use "
                  f"(another streamex up?); choose another with --{name}-port",
                  file=sys.stderr)
            return 2
    config_path = data_dir / "effective-config.toml"
    config_path.write_text(dump_config(config))
    config_path.chmod(0o600)

    server: RedisServer | None = None
    redis_url = args.redis_url or config.redis.url
    if redis_url is None:
        server = RedisServer(data_dir=data_dir / "redis" if keep_dir else None, aof=keep_dir,
                             appendfsync=args.appendfsync, die_with_parent=True)
        if keep_dir:
            (data_dir / "redis").mkdir(exist_ok=True)
        server.start()
        # The services reach the embedded server by its unix socket (cheaper than
        # loopback TCP); the banner shows both.
        redis_url = server.unix_url or server.url

    base = [sys.executable, "-m", "streamex"]
    common = ["--config", str(config_path), "--redis-url", redis_url]
    engines = [Child(f"engine {m.symbol}", [*base, "engine", *common, "--markets", m.symbol,
                                            "--consumer", f"engine-{m.symbol}"])
               for m in config.markets]
    services = [Child("gateway", [*base, "gateway", *common]),
                Child("marketdata", [*base, "marketdata", *common])]
    children = engines + services

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

    try:
        for c in children:
            c.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = all(_wait_listening(cfg.host, cfg.port, deadline)
                    for cfg in (config.gateway, config.marketdata))
        ready = ready and all(c.exited() is None for c in children)
        _print_banner(config, redis_url, server, data_dir if keep_dir else None,
                      generated, ready)
        _supervise(children, stopping)
    finally:
        code = _stop_all(children, force=len(stopping) > 1)
        if server is not None:
            server.stop()
    return code


def _print_banner(config: Config, redis_url: str, embedded: RedisServer | None,
                  data_dir: Path | None, generated: bool, ready: bool) -> None:
    g, md = config.gateway, config.marketdata
    lines = [
        "streamex is up" if ready else "streamex: services did not start listening in time",
        f"  order entry   ws://{g.host}:{g.port}/",
        f"  market data   ws://{md.host}:{md.port}/",
        f"  web page      http://{md.host}:{md.port}/",
        f"  redis         {redis_url}"
        + (" (embedded" + (f", also {embedded.url}" if embedded.url != redis_url else "")
           + (f", data in {data_dir})" if data_dir else ", in memory)")
           if embedded is not None else ""),
        f"  markets       {', '.join(m.symbol for m in config.markets)}",
    ]
    if generated:
        lines.append("  demo accounts (generated; set [[accounts]] in a config to choose):")
        for a in config.accounts:
            lines.append(f"    {a.id}: api_key={a.api_key} secret={a.secret}")
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
    """SIGTERM the services, then the engines (they snapshot); SIGKILL what lingers."""
    code = 0
    engines = [c for c in children if c.name.startswith("engine")]
    services = [c for c in children if c not in engines]
    for group in (services, engines):
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

"""The exchange under test: its endpoints, or a local ``streamex up`` started for the run.

:class:`LocalExchange` runs ``python -m streamex up`` on free loopback ports
with two bench accounts and limits too high to throttle the load; starting it
costs the exchange's own start-up (a few seconds: Redis, engines, gateway,
market data), stopping it waits for the orderly shutdown (up to 30 s).
:func:`exchange` gives the endpoints of ``--url`` or of a local exchange.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contract.market import DEFAULT_MARKETS, Market
from streamex.config import display_url
from streamex.redis_server import free_port

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
BENCH_LIMIT = 10_000_000


@dataclass(frozen=True)
class Endpoints:
    """Where the exchange listens and how to log on."""

    url: str
    md_url: str
    credentials: tuple[tuple[str, str], ...]  # (api_key, secret) per account
    redis_url: str | None
    pid: int | None = None  # root of the exchange's process tree, when known
    metrics_urls: tuple[str, ...] = ()  # every service's /metrics, from the banner


def bench_markets(n: int) -> tuple[Market, ...]:
    """``n`` markets: the default ones, then made-up ones with BTC-USD's specification."""
    extra = tuple(Market(f"X{k}-USD", f"X{k}", "USD", "0.01", "0.0001", "0.0001", "1000",
                         "0.01", "1000000") for k in range(max(0, n - len(DEFAULT_MARKETS))))
    return (DEFAULT_MARKETS + extra)[:n]


class LocalExchange:
    """``python -m streamex up`` on free loopback ports with two bench accounts.

    :meth:`start` returns once the banner says the services listen (their
    output goes to ``workdir/exchange.log``); :meth:`stop` sends SIGTERM and
    waits for the orderly shutdown (engines snapshot), killing after 30 s.
    """

    def __init__(self, markets: int, workdir: Path, cluster: int | None = None,
                 durability: str | None = None, risk: bool = True, metrics: bool = True
                 ) -> None:
        self.risk = risk
        self.metrics = metrics
        self.cluster = cluster
        self.durability = durability
        self.markets = bench_markets(markets)
        self.workdir = workdir
        self.log_path = workdir / "exchange.log"
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self) -> Endpoints:
        from contract.settings import (
            Account,
            Config,
            GatewayConfig,
            LimitsConfig,
            MarketDataConfig,
            MetricsConfig,
            RiskConfig,
        )
        from streamex.config import dump_config, with_password

        # Funds far beyond what any run spends: the risk stage holds and settles, never refuses.
        funds = {a: "1000000000" for m in self.markets for a in (m.base, m.quote)}
        accounts = tuple(Account(f"bench{i}", f"bench{i}-{secrets.token_hex(8)}",
                                 secrets.token_hex(24), balances=funds) for i in (1, 2))
        gw_port, md_port = free_port(), free_port()
        config = Config(
            markets=self.markets, accounts=accounts, risk=RiskConfig(enabled=self.risk),
            gateway=GatewayConfig("127.0.0.1", gw_port),
            marketdata=MarketDataConfig("127.0.0.1", md_port),
            limits=LimitsConfig(connection_rate=float(BENCH_LIMIT), connection_burst=BENCH_LIMIT,
                                account_rate=float(BENCH_LIMIT), account_burst=BENCH_LIMIT,
                                max_backlog=BENCH_LIMIT),
            metrics=MetricsConfig(enabled=self.metrics),
        )
        log = self.log_path.open("w")
        # The configuration (with the accounts' secrets) goes on stdin: no file holds it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamex", "up", "--config", "-",
             "--gateway-port", str(gw_port), "--marketdata-port", str(md_port),
             *(("--cluster", str(self.cluster)) if self.cluster else ()),
             *(("--durability", self.durability) if self.durability else ())],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE, text=True,
        )
        log.close()
        assert self.proc.stdin is not None
        self.proc.stdin.write(dump_config(config))
        self.proc.stdin.close()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        banner = self._banner()
        if "streamex is up" not in (line.strip() for line in banner):
            self.stop()
            raise RuntimeError("the exchange did not start:\n" + "\n".join(banner)
                               + self.log_tail())
        match = next((m for m in (re.match(r"\s*redis\s+((?:redis|unix)://\S+)", line)
                                  or re.match(r"\s*redis\s+cluster of .* seed (redis://\S+)",
                                              line)
                                  for line in banner) if m), None)
        auth = next((m for m in (re.match(r"\s*redis-cli\s+REDISCLI_AUTH=(\S+) ", line)
                                 for line in banner) if m), None)
        redis_url = match.group(1) if match else None
        if redis_url is not None and auth is not None:
            redis_url = with_password(redis_url, auth.group(1))
        metrics_urls = tuple(dict.fromkeys(
            m.group(0) for line in banner
            for m in re.finditer(r"http://[\w.:\[\]-]+/metrics", line)))
        return Endpoints(f"ws://127.0.0.1:{gw_port}/", f"ws://127.0.0.1:{md_port}/",
                         tuple((a.api_key, a.secret) for a in accounts), redis_url,
                         self.proc.pid, metrics_urls)

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _banner(self) -> list[str]:
        """stdout lines up to "Press Ctrl-C" (the services print theirs first), or what came
        before exit or time-out."""
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        return lines

    def log_tail(self, n: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n--- exchange log (last lines) ---\n" + "\n".join(tail) if tail else ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to 30 s, then SIGKILL; the exit code of ``streamex up``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


@contextlib.contextmanager
def exchange(args: argparse.Namespace, cluster: int | None = None,
             durability: str | None = None, risk: bool = True, metrics: bool = True
             ) -> Iterator[Endpoints]:
    """The endpoints of ``--url`` as given, or of a :class:`LocalExchange` for the block
    (on a local cluster of ``cluster`` primaries with ``durability``, when given)."""
    if args.url:
        yield Endpoints(args.url, args.md_url, tuple(zip(args.api_key, args.secret,
                                                         strict=True)), args.redis_url)
        return
    with tempfile.TemporaryDirectory(prefix="streamex-bench-") as tmp:
        local = LocalExchange(args.markets, Path(tmp), cluster, durability, risk, metrics)
        endpoints = local.start()
        print(f"started the exchange: {endpoints.url} {endpoints.md_url} redis "
              f"{display_url(endpoints.redis_url) if endpoints.redis_url else None}",
              file=sys.stderr)
        try:
            yield endpoints
        finally:
            code = local.stop()
            if code not in (0, None):
                print(f"streamex up exited with code {code}{local.log_tail()}",
                      file=sys.stderr)

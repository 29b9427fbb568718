"""``streamex up`` and metrics: the ports it gives the engines, risk engines and history,
the URLs its banner lists, and a configured port that is taken."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from timing import TIMEOUT_S
from up_helpers import Up

from contract.settings import Config
from streamex.config import load_config
from streamex.redis_server import free_port
from streamex.up import MetricsPorts, _plan_metrics, _port_free

MARKETS = """
[[markets]]
symbol = "BTC-USD"
base = "BTC"
quote = "USD"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
max_qty = "1000"
min_price = "0.01"
max_price = "1000000"

[[markets]]
symbol = "ETH-USD"
base = "ETH"
quote = "USD"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "10000"
min_price = "0.01"
max_price = "100000"
"""


def _config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "streamex.toml"
    path.write_text(MARKETS + text)
    return load_config(path)


def _free_run(n: int) -> int:
    """A port p with p .. p+n-1 all free now."""
    while True:
        first = free_port()
        if first + n <= 65535 and all(_port_free("127.0.0.1", first + i) for i in range(n)):
            return first


RESERVED = {8001: "gateway", 8002: "market data", 8003: "rest api"}


def test_configured_ports_are_consecutive_per_process(tmp_path: Path) -> None:
    engine, risk, history = _free_run(2), _free_run(3), _free_run(1)
    config = _config(tmp_path, f"[engine]\nmetrics_port = {engine}\n"
                               f"[risk]\nshards = 3\nmetrics_port = {risk}\n"
                               f"[history]\nmetrics_port = {history}\n")
    assert _plan_metrics(config, RESERVED) == MetricsPorts(
        (engine, engine + 1), (risk, risk + 1, risk + 2), history)


def test_unset_ports_are_free_distinct_ones(tmp_path: Path) -> None:
    config = _config(tmp_path, "[risk]\nshards = 2\n[history]\nmetrics_port = 0\n")
    ports = _plan_metrics(config, RESERVED)
    assert isinstance(ports, MetricsPorts)
    every = [*ports.engines, *ports.risk, ports.history]
    assert len(every) == 5 == len(set(every)) and not set(every) & set(RESERVED)
    off = _config(tmp_path, "[risk]\nenabled = false\n")
    plan = _plan_metrics(off, RESERVED)
    assert isinstance(plan, MetricsPorts) and plan.risk == ()


def test_a_shared_or_taken_metrics_port_is_refused_with_its_name(tmp_path: Path) -> None:
    clash = _config(tmp_path, "[engine]\nmetrics_port = 8002\n")
    message = _plan_metrics(clash, RESERVED)
    assert message == ("engine BTC-USD and market data would share port 8002 ([engine] "
                       "metrics_port = 8002, one port per process from there); choose other "
                       "ports")
    first = _free_run(2)
    overlap = _config(tmp_path, f"[engine]\nmetrics_port = {first}\n"
                                f"[risk]\nmetrics_port = {first + 1}\n")
    assert str(_plan_metrics(overlap, RESERVED)).startswith(
        f"risk engine acct-0 and engine ETH-USD would share port {first + 1}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "taken.toml").write_text(MARKETS + f"[history]\nmetrics_port = {port}\n")
        done = subprocess.run(
            [sys.executable, "-m", "streamex", "up", "--config", str(tmp_path / "taken.toml"),
             "--data-dir", str(tmp_path / "d"), "--gateway-port", str(free_port()),
             "--marketdata-port", str(free_port()), "--api-port", str(free_port())],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 2, done.stderr
    assert f"history: metrics port 127.0.0.1:{port} is in use" in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_the_banner_lists_the_configured_consecutive_ports(tmp_path: Path) -> None:
    engine, risk, history = _free_run(2), _free_run(1), _free_run(1)
    (tmp_path / "up.toml").write_text(
        MARKETS + f"[engine]\nmetrics_port = {engine}\n[risk]\nmetrics_port = {risk}\n"
                  f"[history]\nmetrics_port = {history}\n")
    api = free_port()
    up = Up(None, tmp_path / "up.log",
            extra=("--config", str(tmp_path / "up.toml"), "--api-port", str(api)))
    try:
        assert up.metrics_urls == {
            "engine BTC-USD": f"http://127.0.0.1:{engine}/metrics",
            "engine ETH-USD": f"http://127.0.0.1:{engine + 1}/metrics",
            "risk engine acct-0": f"http://127.0.0.1:{risk}/metrics",
            "gateway": f"http://127.0.0.1:{up.gateway_port}/metrics",
            "market data": f"http://127.0.0.1:{up.marketdata_port}/metrics",
            "history": f"http://127.0.0.1:{history}/metrics",
            "rest api": f"http://127.0.0.1:{api}/metrics"}
        for name in ("engine BTC-USD", "engine ETH-USD", "risk engine acct-0", "history"):
            with urllib.request.urlopen(up.metrics_urls[name], timeout=TIMEOUT_S) as resp:
                assert resp.status == 200 and b"streamex_" in resp.read(), name
    finally:
        assert up.stop() == 0, up.log_path.read_text()

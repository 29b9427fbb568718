"""``streamex status``: read from a real Redis (one server, a cluster) with real engine
processes, one killed; and the monitoring files of deploy/ against the metric names the
services export."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from engine_helpers import applied_id
from streamex_process import REPO, StreamexProcess
from timing import TIMEOUT_S, scaled, wait_until

from contract import keys
from contract.commands import Place, encode_command
from contract.streams import IN_FIELD
from ops.registry import TTL_MS, new_registration, refresh
from streamex.config import display_url
from streamex.redis_cluster import LocalCluster

BTC = "BTC-USD"
ETH = "ETH-USD"
MARKET = """
[[markets]]
symbol = "{symbol}"
base = "{base}"
quote = "USD"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
max_qty = "1000"
min_price = "0.01"
max_price = "1000000"
"""
CONFIG = MARKET.format(symbol=BTC, base="BTC") + """
[risk]
enabled = false

[engine]
block_ms = 100
lease_ms = {lease_ms}
snapshot_every = 1
"""


def status(config: Path, redis_url: str | None, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    where = ["--redis-url", redis_url] if redis_url else []
    return subprocess.run(
        [sys.executable, "-m", "streamex", "status", "--config", str(config), *where, *extra],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False, cwd=REPO,
        env=env)


def status_json(config: Path, redis_url: str | None) -> tuple[int, dict[str, Any]]:
    done = status(config, redis_url, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def processes() -> Iterator[list[StreamexProcess]]:
    started: list[StreamexProcess] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "streamex.toml"
    path.write_text(CONFIG.format(lease_ms=int(scaled(1500))))
    return path


def engine(processes: list[StreamexProcess], config: Path, redis_url: str | None, name: str,
           tmp_path: Path) -> StreamexProcess:
    where = ["--redis-url", redis_url] if redis_url else []
    proc = StreamexProcess(["engine", "--config", str(config), *where, "--consumer", name],
                           tmp_path / f"{name}.log").start()
    processes.append(proc)
    return proc


def stage(report: dict[str, Any], name: str = BTC) -> dict[str, Any]:
    (only,) = [s for s in report["stages"] if s["stage"] == name]
    return only


def test_status_shows_the_standby_active_once_the_active_engine_is_killed(
        config: Path, redis_url: str, tmp_path: Path, processes: list[StreamexProcess]
        ) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        first = engine(processes, config, redis_url, "e1", tmp_path)
        wait_until(lambda: client.get(keys.lease_key(BTC)) == b"e1", what="e1 active")
        engine(processes, config, redis_url, "e2", tmp_path)

        def both() -> dict[str, Any] | None:
            code, report = status_json(config, redis_url)
            s = stage(report)
            ok = (code == 0 and s["active"] == "e1" and s["active_state"] == "live"
                  and s["standbys"] == ["e2"])
            return report if ok else None

        report = wait_until(both, what="e1 active and e2 standing by")
        assert report["ok"] is True and report["problems"] == []
        s = stage(report)
        assert s["epoch"] == 1 and s["lag_entries"] == 0 and s["kind"] == "market"
        assert s["active_pid"] == first.pid and s["node"] is None
        engines = {r["instance"]: r for r in report["services"] if r["service"] == "engine"}
        assert set(engines) == {"e1", "e2"}
        assert engines["e1"]["owned"] == [BTC] and engines["e2"]["owned"] == []
        assert engines["e1"]["stages"] == [BTC] == engines["e2"]["stages"]
        assert engines["e1"]["pid"] == first.pid
        assert all(r["state"] == "live" for r in engines.values())

        # An order, applied: the streams and the last commit show it.
        entry = client.xadd(keys.in_stream(BTC), {IN_FIELD: encode_command(
            Place("alice", "buy", "limit", 10, 100))})
        wait_until(lambda: applied_id(client, BTC) == entry, what="the order applied")
        # snapshot_every = 1: a snapshot follows the commit, covering the order.
        s = wait_until(lambda: (x := stage(status_json(config, redis_url)[1]))["snapshot"]
                       == "current" and x["out_length"] > 0 and x, what="the commit in status")
        assert s["snapshot_input_id"] == entry.decode() and s["snapshot_behind_s"] == 0
        assert s["snapshot_covers_age_s"] is not None and s["last_commit_age_s"] is not None
        assert s["out_oldest_age_s"] is not None and s["out_retention"] > 0

        first.signal(signal.SIGKILL)
        first.wait()

        def taken_over() -> dict[str, Any] | None:
            code, report = status_json(config, redis_url)
            s = stage(report)
            instances = {r["instance"] for r in report["services"] if r["service"] == "engine"}
            ok = (code == 0 and s["active"] == "e2" and s["active_state"] == "live"
                  and s["standbys"] == [] and instances == {"e2"})
            return report if ok else None

        # The lease expires (lease_ms), e2 takes over; e1's registration expires (TTL_MS).
        report = wait_until(taken_over, TIMEOUT_S + scaled(TTL_MS / 1000),
                            "e2 active and e1 gone")
        assert stage(report)["epoch"] == 2
    finally:
        client.close()


def test_a_market_without_an_engine_is_exit_code_1_and_plain_text_without_a_tty(
        config: Path, redis_url: str) -> None:
    done = status(config, redis_url)
    assert done.returncode == 1, done.stderr
    assert "\x1b[" not in done.stdout  # no colour when stdout is not a terminal
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"streamex status of {display_url(redis_url)} at ")
    password = redis.connection.parse_url(redis_url).get("password")  # type: ignore[attr-defined]
    assert password and password not in done.stdout
    header = lines.index("Markets and risk shards") + 1
    assert lines[header].split()[:4] == ["STAGE", "ACTIVE", "STANDBY", "EPOCH"]
    assert lines[header + 1].split()[:3] == [BTC, "NONE", "-"]
    assert "  none registered" in done.stdout
    assert "NOT OK: no live active engine" in done.stdout
    assert f"  {BTC}: no engine holds the lease" in lines
    code, report = status_json(config, redis_url)
    assert code == 1 and report["ok"] is False and stage(report)["active"] is None
    assert report["problems"] == [f"{BTC}: no engine holds the lease"]


def test_a_lease_holder_without_a_live_registration_is_flagged(
        config: Path, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set(keys.lease_key(BTC), "ghost", px=60_000)
        code, report = status_json(config, redis_url)
        assert code == 1 and stage(report)["active_state"] == "unregistered"
        reg = new_registration("engine", "ghost", stages=[BTC], owned=[BTC])
        refresh(client, reg)
        code, report = status_json(config, redis_url)
        assert code == 0 and stage(report)["active_state"] == "live", report
        # Not refreshed for longer than STALE_MS (its process hangs): stale, flagged.
        raw = json.loads(client.get(keys.service_key("engine", "ghost")) or b"{}")
        raw["updated_ms"] -= 10_000
        client.set(keys.service_key("engine", "ghost"), json.dumps(raw), px=60_000)
        code, report = status_json(config, redis_url)
        assert code == 1 and stage(report)["active_state"] == "stale"
        (svc,) = report["services"]
        assert svc["state"] == "stale" and svc["instance"] == "ghost"
        # The risk service's registrations never stand in for a market's engine.
        client.delete(keys.service_key("engine", "ghost"))
        refresh(client, new_registration("risk", "ghost", stages=["acct-0"]))
        code, report = status_json(config, redis_url)
        assert code == 1 and stage(report)["active_state"] == "unregistered"


def test_colour_only_on_a_terminal_without_no_color(config: Path, redis_url: str) -> None:
    def on_a_tty(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "streamex", "status", "--config", str(config),
                 "--redis-url", redis_url], stdout=follower, stderr=subprocess.PIPE,
                timeout=TIMEOUT_S, check=False, cwd=REPO, env=env)
            os.close(follower)
            follower = -1
            assert proc.returncode == 1, proc.stderr
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(leader)
            if follower >= 0:
                os.close(follower)

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = on_a_tty(env)
    assert "\x1b[31mNONE\x1b[0m" in coloured and "\x1b[31mNOT OK" in coloured
    plain = on_a_tty({**env, "NO_COLOR": "1"})
    assert "\x1b[" not in plain and "NOT OK" in plain


def test_an_unreachable_redis_is_exit_code_2_with_a_clear_message(config: Path) -> None:
    done = status(config, "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert "cannot read Redis at redis://127.0.0.1:1/0" in done.stderr
    done = status(config, "http://127.0.0.1:1/")
    assert done.returncode == 2 and done.stderr.startswith("streamex status: ")
    done = subprocess.run([sys.executable, "-m", "streamex", "status", "--bogus"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 2
    done = subprocess.run([sys.executable, "-m", "streamex", "status", "--help"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0 and "exit status: 0 when every" in done.stdout


@pytest.mark.usefixtures("cluster_garbage")
def test_status_of_a_cluster(tmp_path: Path, processes: list[StreamexProcess]) -> None:
    with LocalCluster(primaries=2, replicas=0, data_dir=tmp_path / "cluster",
                      die_with_parent=True) as cluster:
        urls = ", ".join(f'"{u}"' for u in cluster.urls[1:])
        config = tmp_path / "cluster.toml"
        config.write_text(f'[redis]\ncluster = true\nurl = "{cluster.url}"\nurls = [{urls}]\n'
                          + MARKET.format(symbol=BTC, base="BTC")
                          + MARKET.format(symbol=ETH, base="ETH")
                          + "[risk]\nenabled = true\nshards = 2\n")
        e1 = engine(processes, config, None, "e1", tmp_path)
        try:
            _check_cluster_status(cluster, config, tmp_path)
        finally:
            e1.kill()  # before the cluster stops


def _check_cluster_status(cluster: LocalCluster, config: Path, tmp_path: Path) -> None:
    homes = {s: f"127.0.0.1:{cluster.node_of(keys.in_stream(s)).port}" for s in (BTC, ETH)}

    def active() -> dict[str, Any] | None:
        report = status_json(config, None)[1]
        return report if all(stage(report, s)["active"] == "e1" for s in (BTC, ETH)) \
            else None

    report = wait_until(active, what="e1 active for both markets")
    assert report["cluster"] is True
    assert {s: stage(report, s)["node"] for s in (BTC, ETH)} == homes
    # No risk engine runs: both shards are flagged, exit code 1.
    assert [stage(report, f"acct-{k}")["active_state"] for k in (0, 1)] == ["none"] * 2
    done = status(config, None)
    assert done.returncode == 1 and "NODE" in done.stdout
    assert "acct-1: no engine holds the lease" in done.stdout
    # A node's URL with a configuration that does not say "cluster": found out.
    plain = tmp_path / "plain.toml"
    plain.write_text(MARKET.format(symbol=BTC, base="BTC") + MARKET.format(
        symbol=ETH, base="ETH") + "[risk]\nenabled = false\n")
    code, report = status_json(plain, cluster.urls[1])
    assert code == 0 and report["cluster"] is True
    assert {s: stage(report, s)["active"] for s in (BTC, ETH)} == {BTC: "e1", ETH: "e1"}

"""``streamex status``: read from a real Redis with real engine processes, one killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from engine_helpers import applied_id
from streamex_process import StreamexProcess
from timing import TIMEOUT_S, scaled, wait_until

from contract import keys
from contract.commands import Place, encode_command
from contract.streams import IN_FIELD
from ops.registry import TTL_MS

BTC = "BTC-USD"
CONFIG = """
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

[risk]
enabled = false

[engine]
block_ms = 100
lease_ms = {lease_ms}
"""


def status(config: Path, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamex", "status", "--config", str(config),
         "--redis-url", redis_url, *extra],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def status_json(config: Path, redis_url: str) -> tuple[int, dict[str, Any]]:
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


def engine(processes: list[StreamexProcess], config: Path, redis_url: str, name: str,
           tmp_path: Path) -> StreamexProcess:
    proc = StreamexProcess(["engine", "--config", str(config), "--redis-url", redis_url,
                            "--consumer", name], tmp_path / f"{name}.log").start()
    processes.append(proc)
    return proc


def stage(report: dict[str, Any]) -> dict[str, Any]:
    (only,) = [s for s in report["stages"] if s["stage"] == BTC]
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
        s = stage(report)
        assert s["epoch"] == 1 and s["lag_entries"] == 0
        engines = {r["instance"]: r for r in report["services"] if r["service"] == "engine"}
        assert set(engines) == {"e1", "e2"}
        assert engines["e1"]["owned"] == [BTC] and engines["e2"]["owned"] == []
        assert all(r["state"] == "live" for r in engines.values())

        # An order, applied: the streams and the last commit show it.
        entry = client.xadd(keys.in_stream(BTC), {IN_FIELD: encode_command(
            Place("alice", "buy", "limit", 10, 100))})
        wait_until(lambda: applied_id(client, BTC) == entry, what="the order applied")
        s = wait_until(lambda: (x := stage(status_json(config, redis_url)[1]))["out_length"]
                       > 0 and x, what="the commit in status")
        assert s["in_length"] >= 1 and s["last_commit_age_s"] is not None

        first.signal(signal.SIGKILL)
        first.wait()

        def taken_over() -> dict[str, Any] | None:
            code, report = status_json(config, redis_url)
            s = stage(report)
            instances = {r["instance"] for r in report["services"] if r["service"] == "engine"}
            ok = (code == 0 and s["active"] == "e2" and s["active_state"] == "live"
                  and s["standbys"] == [] and instances == {"e2"})
            return report if ok else None

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
    assert lines[0].split()[:3] == ["STAGE", "ACTIVE", "STANDBY"]
    assert lines[1].split()[:2] == [BTC, "NONE"]
    assert f"no live active engine for: {BTC}" in done.stdout
    code, report = status_json(config, redis_url)
    assert code == 1 and report["ok"] is False and stage(report)["active"] is None


def test_an_unreachable_redis_is_exit_code_2_with_a_clear_message(config: Path) -> None:
    done = status(config, "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert "cannot read Redis at redis://127.0.0.1:1/0" in done.stderr

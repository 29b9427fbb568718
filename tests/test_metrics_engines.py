"""Metrics, health and registration of the engine processes and of ``streamex history``.

Real Redis, real ``streamex engine`` / ``streamex risk`` / ``streamex history``
processes started with ``--metrics-port 0``: the URL comes from their
``event=metrics`` log line, and every assertion reads the text exposition
(parsed by ``prometheus_client``), ``/readyz`` or the registrations in Redis.
"""

from __future__ import annotations

import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from engine_helpers import applied_id
from prometheus_client.parser import text_string_to_metric_families
from streamex_process import StreamexProcess
from timing import TIMEOUT_S, scaled, wait_until

from contract import keys
from contract.commands import Place, encode_command
from contract.risk import Deposit, encode_risk_command, risk_keys
from contract.streams import IN_FIELD
from ops.registry import Registration, read_registrations
from streamex.redis_cluster import LocalCluster
from streamex.redis_server import RedisServer

BTC = "BTC-USD"
ETH = "ETH-USD"
_METRICS = re.compile(r"event=metrics service=(\w+) url=(http://\S+)")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- helpers ------------------------------------------------------------------------------


def write_config(directory: Path, text: str) -> Path:
    path = directory / "streamex.toml"
    path.write_text(text)
    return path


ENGINE_CONFIG = """
[risk]
enabled = false

[engine]
block_ms = 100
# Long enough that a standby never takes over from a SIGSTOPped engine during a test.
lease_ms = {lease_ms}
"""


@pytest.fixture
def processes() -> Iterator[list[StreamexProcess]]:
    """Processes started by the test; killed at teardown if still running."""
    started: list[StreamexProcess] = []
    yield started
    for proc in started:
        proc.kill()


def start(processes: list[StreamexProcess], args: list[str], log_path: Path
          ) -> StreamexProcess:
    proc = StreamexProcess(args, log_path).start()
    processes.append(proc)
    return proc


def metrics_url(proc: StreamexProcess, service: str) -> str:
    """The URL of the process's ``event=metrics`` line, once it is logged."""

    def found() -> str | None:
        assert proc.running(), f"{service} exited:\n{proc.log()}"
        match = _METRICS.search(proc.log())
        if match is None:
            return None
        assert match.group(1) == service
        return match.group(2)

    url: str = wait_until(found, TIMEOUT_S, f"{service}'s event=metrics line")
    assert len(_METRICS.findall(proc.log())) == 1
    return url


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(url: str) -> Samples:
    """Every sample of the exposition at ``url``: (name, sorted labels) -> value."""
    status, text = get(url)
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def readyz(metrics: str) -> tuple[int, str]:
    return get(metrics.removesuffix("/metrics") + "/readyz")


def registrations(client: redis.Redis | redis.cluster.RedisCluster, service: str
                  ) -> dict[str, Registration]:
    return {r.instance: r for r in read_registrations(client) if r.service == service}


def place(client: redis.Redis | redis.cluster.RedisCluster, n: int = 1, symbol: str = BTC
          ) -> list[bytes]:
    """XADD ``n`` resting buy orders to ``symbol``'s input; their entry ids."""
    return [bytes(client.xadd(keys.in_stream(symbol), {IN_FIELD: encode_command(  # type: ignore[arg-type]
        Place("alice", "buy", "limit", 10, 100 + i))})) for i in range(n)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def engine_args(config: Path, redis_url: str, consumer: str, *extra: str) -> list[str]:
    return ["engine", "--config", str(config), "--redis-url", redis_url, "--consumer", consumer,
            "--markets", BTC, *extra]


# -- market engines ------------------------------------------------------------------------


def test_engine_metrics_count_commands_and_show_the_lag_of_a_stopped_engine(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        processes: list[StreamexProcess]) -> None:
    config = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=int(scaled(60_000))))
    active = start(processes, engine_args(config, redis_url, "e1", "--metrics-port", "0"),
                   tmp_path / "e1.log")
    active_url = metrics_url(active, "engine")
    wait_until(lambda: value(scrape(active_url), "streamex_engine_lease_held", stage=BTC) == 1,
               what="the active engine to hold the lease")
    standby = start(processes, engine_args(config, redis_url, "e2", "--metrics-port", "0"),
                    tmp_path / "e2.log")
    standby_url = metrics_url(standby, "engine")

    # Both are ready: the active once recovered and caught up, the standby once connected.
    wait_until(lambda: readyz(active_url)[0] == 200, what="the active engine ready")
    wait_until(lambda: readyz(standby_url)[0] == 200, what="the standby ready")
    assert readyz(active_url)[1] == "ready\n"
    samples = scrape(standby_url)
    assert value(samples, "streamex_engine_lease_held", stage=BTC) == 0
    assert value(samples, "streamex_engine_epoch", stage=BTC) is None
    assert value(samples, "streamex_engine_snapshot_age_seconds", stage=BTC) is None
    before = scrape(active_url)
    assert value(before, "streamex_engine_epoch", stage=BTC) == 1
    assert value(before, "streamex_engine_snapshot_age_seconds", stage=BTC) is not None
    assert value(before, "streamex_engine_recoveries_total", stage=BTC) == 1
    assert value(before, "streamex_engine_lag_entries", stage=BTC) == 0
    applied = value(before, "streamex_engine_commands_applied_total", stage=BTC)
    batches = value(before, "streamex_engine_batch_size_count", stage=BTC)
    commits = value(before, "streamex_engine_commit_seconds_count", stage=BTC)
    assert applied is not None and batches is not None and commits is not None

    # One order: applied once, in one commit of one command.
    (entry_id,) = place(client)
    wait_until(lambda: applied_id(client, BTC) == entry_id, what="the order applied")
    after = scrape(active_url)
    assert value(after, "streamex_engine_commands_applied_total", stage=BTC) == applied + 1
    assert value(after, "streamex_engine_batch_size_count", stage=BTC) == batches + 1
    ones = value(before, "streamex_engine_batch_size_bucket", stage=BTC, le="1.0")
    assert ones is not None
    assert value(after, "streamex_engine_batch_size_bucket", stage=BTC, le="1.0") == ones + 1
    assert value(after, "streamex_engine_commit_seconds_count", stage=BTC) == commits + 1
    assert value(scrape(standby_url), "streamex_engine_commands_applied_total",
                 stage=BTC) == 0

    # The active engine stopped with entries queued: the standby's scrape shows them.
    active.signal(signal.SIGSTOP)
    try:
        queued = place(client, 3)

        def lagging() -> bool:
            s = scrape(standby_url)
            seconds = value(s, "streamex_engine_lag_seconds", stage=BTC)
            return value(s, "streamex_engine_lag_entries", stage=BTC) == 3 \
                and seconds is not None and seconds > 0

        wait_until(lagging, what="lag of the 3 queued entries")
    finally:
        active.signal(signal.SIGCONT)
    wait_until(lambda: applied_id(client, BTC) == queued[-1], what="the queued entries applied")

    def caught_up() -> bool:
        s = scrape(standby_url)
        return value(s, "streamex_engine_lag_entries", stage=BTC) == 0 \
            and value(s, "streamex_engine_lag_seconds", stage=BTC) == 0

    wait_until(caught_up, what="lag back to 0")
    final = scrape(active_url)
    assert value(final, "streamex_engine_commands_applied_total", stage=BTC) == applied + 4
    assert value(final, "streamex_engine_lease_held", stage=BTC) == 1
    assert readyz(active_url)[0] == 200

    # Registrations: what each holds, with its metrics URL.
    regs = wait_until(lambda: (r := registrations(client, "engine")).keys() == {"e1", "e2"}
                      and r, what="both registrations")
    assert regs["e1"].stages == [BTC] and regs["e1"].owned == [BTC]
    assert regs["e2"].stages == [BTC] and regs["e2"].owned == []
    assert regs["e1"].urls == {"metrics": active_url}
    assert regs["e2"].urls == {"metrics": standby_url}

    # A clean stop deletes the registration; the standby takes over and says so.
    assert active.stop() == 0
    assert "e1" not in registrations(client, "engine")
    wait_until(lambda: value(scrape(standby_url), "streamex_engine_lease_held",
                             stage=BTC) == 1, what="the standby to take over")
    wait_until(lambda: registrations(client, "engine")["e2"].owned == [BTC],
               what="the standby's registration to own the market")
    wait_until(lambda: readyz(standby_url)[0] == 200, what="the new active engine ready")


@pytest.mark.usefixtures("cluster_garbage")
def test_engine_lag_on_a_redis_cluster(tmp_path: Path,
                                       processes: list[StreamexProcess]) -> None:
    """Two primaries, BTC-USD on one and ETH-USD on the other: the standby's collector
    reads each market's lag on its node."""
    with LocalCluster(primaries=2, replicas=0, data_dir=tmp_path / "nodes",
                      die_with_parent=True) as cluster:
        client = cluster.client()
        try:
            nodes = {client.get_node_from_key(keys.in_stream(m)).name  # type: ignore[no-untyped-call]
                     for m in (BTC, ETH)}
            assert len(nodes) == 2
            config = write_config(tmp_path, "[redis]\ncluster = true\n" + ENGINE_CONFIG.format(
                lease_ms=int(scaled(60_000))))
            args = ["engine", "--config", str(config), "--redis-url", cluster.url,
                    "--metrics-port", "0", "--consumer"]
            active = start(processes, [*args, "e1"], tmp_path / "e1.log")
            active_url = metrics_url(active, "engine")
            wait_until(lambda: readyz(active_url)[0] == 200, what="the active engine ready")
            standby = start(processes, [*args, "e2"], tmp_path / "e2.log")
            standby_url = metrics_url(standby, "engine")
            wait_until(lambda: readyz(standby_url)[0] == 200, what="the standby ready")

            active.signal(signal.SIGSTOP)
            try:
                place(client, 2, BTC)
                last = place(client, 1, ETH)[-1]

                def lagging() -> bool:
                    s = scrape(standby_url)
                    return (value(s, "streamex_engine_lag_entries", stage=BTC),
                            value(s, "streamex_engine_lag_entries", stage=ETH)) == (2, 1)

                wait_until(lagging, what="each market's lag")
            finally:
                active.signal(signal.SIGCONT)
            wait_until(lambda: client.get(keys.applied_key(ETH)) == last, what="ETH applied")

            def caught_up() -> bool:
                s = scrape(standby_url)
                return all(value(s, "streamex_engine_lag_entries", stage=m) == 0 and
                           value(s, "streamex_engine_lag_seconds", stage=m) == 0
                           for m in (BTC, ETH))

            wait_until(caught_up, what="lag back to 0")
            applied = scrape(active_url)
            assert value(applied, "streamex_engine_commands_applied_total", stage=BTC) == 2
            assert value(applied, "streamex_engine_commands_applied_total", stage=ETH) == 1
            regs = wait_until(lambda: (r := registrations(client, "engine")).keys()
                              == {"e1", "e2"} and r, what="both registrations")
            assert sorted(regs["e1"].owned) == [BTC, ETH] and regs["e2"].owned == []
            assert active.stop() == 0
            assert "e1" not in registrations(client, "engine")
        finally:
            for proc in processes:
                proc.kill()
            client.close()


def test_readyz_fails_while_redis_is_gone_and_healthz_stays_up(
        redis_server: RedisServer, redis_url: str, tmp_path: Path,
        processes: list[StreamexProcess]) -> None:
    config = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=3000))
    engine = start(processes, engine_args(config, redis_url, "e1", "--metrics-port", "0"),
                   tmp_path / "e1.log")
    url = metrics_url(engine, "engine")
    wait_until(lambda: readyz(url)[0] == 200, what="the engine ready")

    redis_server.kill()

    def unready() -> str | None:
        status, body = readyz(url)
        return body if status == 503 else None

    body = wait_until(unready, what="/readyz to fail")
    assert "not ready" in body and "redis" in body, body
    assert get(url.removesuffix("/metrics") + "/healthz") == (200, "ok\n")
    assert scrape(url)  # the lag is left out, the rest still answers

    redis_server.restart()  # without its data: the engine recovers an empty market
    wait_until(lambda: readyz(url)[0] == 200, TIMEOUT_S * 2, "the engine ready again")
    reconnects = value(scrape(url), "streamex_engine_reconnects_total")
    assert reconnects is not None and reconnects >= 1
    assert (value(scrape(url), "streamex_engine_recoveries_total", stage=BTC) or 0) >= 2


def test_a_taken_metrics_port_is_a_clear_error_and_exit_code_2(
        redis_url: str, tmp_path: Path, processes: list[StreamexProcess]) -> None:
    config = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=3000))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = start(processes, engine_args(config, redis_url, "e1", "--metrics-port",
                                              str(port)), tmp_path / "e1.log")
        assert engine.wait() == 2
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in engine.log()


def test_metrics_disabled_means_no_listener_and_the_config_port_is_used_otherwise(
        client: redis.Redis, redis_url: str, tmp_path: Path,
        processes: list[StreamexProcess]) -> None:
    off = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=3000)
                       + "metrics_port = 0\n\n[metrics]\nenabled = false\n")
    engine = start(processes, engine_args(off, redis_url, "e1", "--metrics-port", "0"),
                   tmp_path / "off.log")
    wait_until(lambda: "event=recovered" in engine.log(), what="the engine recovered")
    wait_until(lambda: registrations(client, "engine").get("e1"), what="its registration")
    assert "event=metrics" not in engine.log()
    assert registrations(client, "engine")["e1"].urls == {}
    assert engine.stop() == 0

    on = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=3000) + "metrics_port = 0\n")
    engine = start(processes, engine_args(on, redis_url, "e1"), tmp_path / "on.log")
    url = metrics_url(engine, "engine")
    wait_until(lambda: readyz(url)[0] == 200, what="the engine ready")
    assert engine.stop() == 0


# -- risk engines ------------------------------------------------------------------------


def test_risk_engine_metrics_show_its_shard(client: redis.Redis, redis_url: str,
                                            tmp_path: Path,
                                            processes: list[StreamexProcess]) -> None:
    config = write_config(tmp_path, "[risk]\nenabled = true\nshards = 1\n\n"
                          "[engine]\nblock_ms = 100\nlease_ms = 3000\n")
    risk = start(processes, ["risk", "--config", str(config), "--redis-url", redis_url,
                             "--consumer", "r1", "--metrics-port", "0"], tmp_path / "risk.log")
    url = metrics_url(risk, "risk")
    wait_until(lambda: readyz(url)[0] == 200, what="the risk engine ready")
    samples = scrape(url)
    assert value(samples, "streamex_engine_lease_held", stage="acct-0") == 1
    applied = value(samples, "streamex_engine_commands_applied_total", stage="acct-0")
    assert applied is not None
    assert {labels for name, labels in samples
            if name == "streamex_engine_lease_held"} == {(("stage", "acct-0"),)}

    entry_id = client.xadd(risk_keys(0).input, {IN_FIELD: encode_risk_command(
        Deposit("alice", "USD", 100, "test:1"))})
    wait_until(lambda: client.get(risk_keys(0).applied) == entry_id, what="the deposit applied")
    after = scrape(url)
    assert value(after, "streamex_engine_commands_applied_total", stage="acct-0") == applied + 1
    assert value(after, "streamex_engine_lag_entries", stage="acct-0") == 0

    regs = wait_until(lambda: registrations(client, "risk").get("r1"), what="registration")
    assert regs.stages == ["acct-0"] and regs.owned == ["acct-0"]
    assert regs.urls == {"metrics": url}
    assert risk.stop() == 0
    assert "r1" not in registrations(client, "risk")


# -- history ---------------------------------------------------------------------------------


def test_history_metrics_follow_real_traffic(client: redis.Redis, redis_url: str,
                                             tmp_path: Path,
                                             processes: list[StreamexProcess]) -> None:
    config = write_config(tmp_path, ENGINE_CONFIG.format(lease_ms=3000))
    start(processes, ["engine", "--config", str(config), "--redis-url", redis_url,
                      "--consumer", "e1"], tmp_path / "engine.log")
    db = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    history = start(processes, ["history", "--config", str(config), "--redis-url", redis_url,
                                "--db", db, "--metrics-port", "0"], tmp_path / "history.log")
    url = metrics_url(history, "history")
    wait_until(lambda: readyz(url)[0] == 200, what="history ready")
    samples = scrape(url)
    assert value(samples, "streamex_history_entries_total", stream=BTC) == 0
    assert value(samples, "streamex_history_lag_seconds", stream=BTC) == 0

    ids = place(client, 5)
    wait_until(lambda: applied_id(client, BTC) == ids[-1], what="the orders applied")
    out = client.xlen(keys.out_stream(BTC))
    assert out >= 1

    def written() -> Samples | None:
        s = scrape(url)
        return s if value(s, "streamex_history_entries_total", stream=BTC) == out else None

    samples = wait_until(written, what="history to write every :out entry")
    assert value(samples, "streamex_history_entries_total", stream="ETH-USD") == 0
    assert (value(samples, "streamex_history_batches_total") or 0) >= 1
    assert (value(samples, "streamex_history_rows_total") or 0) >= 5  # an order row each
    assert (value(samples, "streamex_history_write_seconds_count") or 0) >= 1
    assert value(samples, "streamex_history_lag_entries", stream=BTC) == 0
    assert value(samples, "streamex_history_lag_seconds", stream=BTC) == 0
    assert value(samples, "streamex_history_errors_total") == 0
    assert readyz(url)[0] == 200

    reg = wait_until(lambda: next(iter(registrations(client, "history").values()), None),
                     what="history's registration")
    assert reg.urls == {"metrics": url}
    assert history.stop() == 0
    assert not registrations(client, "history")  # deleted as it stopped, not expired
